"""The worker runtime: declare a `Pool`, register methods, run it with `rpcfleet worker`."""

from workers.context import JobContext
from workers.errors import CallError
from workers.handlers import InvalidParams
from workers.loader import PoolNotFound, load_pool
from workers.memory import CacheInfo, describe, pss_bytes
from workers.pool import Pool
from workers.shared_mapping import SharedMapping
from workers.supervisor import Supervisor

__all__ = [
    "CacheInfo",
    "CallError",
    "InvalidParams",
    "JobContext",
    "Pool",
    "PoolNotFound",
    "SharedMapping",
    "Supervisor",
    "describe",
    "load_pool",
    "pss_bytes",
]
