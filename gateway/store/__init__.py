"""The job store: jobs, idempotency keys and the callback outbox, behind one small interface."""

from gateway.store.base import Delivery, IdempotencyConflict, JobStore, NewJob, PublishClaim
from gateway.store.sqlite import SqliteJobStore

__all__ = [
    "Delivery", "IdempotencyConflict", "JobStore", "NewJob", "PublishClaim", "SqliteJobStore",
]
