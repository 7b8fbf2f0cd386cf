"""The gateway's AMQP side: one robust connection per process, the RPC client over it."""

from gateway.amqp.link import BrokerLink
from gateway.amqp.rpc import RpcClient, new_call_id, publish_request
from gateway.errors import CallerGone

__all__ = ["BrokerLink", "CallerGone", "RpcClient", "new_call_id", "publish_request"]
