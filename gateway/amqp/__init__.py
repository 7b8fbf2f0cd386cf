"""The gateway's AMQP side: one robust connection per process, the RPC client over it."""

from gateway.amqp.link import BrokerLink
from gateway.amqp.rpc import CallerGone, RpcClient, new_call_id, publish_request

__all__ = ["BrokerLink", "CallerGone", "RpcClient", "new_call_id", "publish_request"]
