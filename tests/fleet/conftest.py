from tests.support.fleet import start_worker
from tests.support.gateway import start_gateway

__all__ = ["start_gateway", "start_worker"]
