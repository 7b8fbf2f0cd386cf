"""rpcfleet: the command line, the settings and the local broker that tie gateway and workers together."""
