"""rpcfleet: the command line, the settings and the local broker around gateway and workers."""
