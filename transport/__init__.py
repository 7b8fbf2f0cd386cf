"""The AMQP plumbing gateways and workers share: connecting to the nodes of a cluster, and
consumers that come back when the broker closes their channel. I/O, unlike `protocol`; it
imports neither side, and `rpcfleet` (the CLI) builds on all of them."""
