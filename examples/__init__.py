"""Example pools: run them with `rpcfleet worker examples.vectors:pool`."""
