"""Sub-commands of the `rpcfleet` console script, one module each."""
