from tests.support.fleet import start_worker
from tests.support.gateway import start_gateway
from tests.support.receiver import receiver

__all__ = ["receiver", "start_gateway", "start_worker"]
