"""The gateway's AMQP side: one robust connection per process, the RPC client over it."""
