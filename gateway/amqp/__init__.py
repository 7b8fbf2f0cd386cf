"""The gateway's AMQP side: one robust connection per process, the RPC client over it."""

from gateway.amqp.link import BrokerLink
from gateway.amqp.rpc import RpcClient, publish_confirmed

__all__ = ["BrokerLink", "RpcClient", "publish_confirmed"]
