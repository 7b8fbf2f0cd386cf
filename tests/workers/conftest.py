from tests.support.fleet import start_worker

__all__ = ["start_worker"]
