"""The job store's interface on SQL, once for both databases: each method runs one operation of
`gateway.store.operations` through the driver a subclass provides (`_read`, `_write`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, TypeVar

from gateway.store import operations as ops
from gateway.store.base import Delivery, NewJob, PublishClaim, purge_in_batches
from gateway.store.dialect import Dialect
from gateway.store.rows import JobEventRecord
from gateway.store.steps import Steps
from protocol import ErrorBody, Job, JobStatus

T = TypeVar("T")


class SqlJobStore(ABC):
    """`gateway.store.base.JobStore` on a SQL database: semantics in `operations`, I/O in the
    subclass."""

    dialect: Dialect
    store_id: str
    purge_batch: int

    @abstractmethod
    async def _read(self, steps: Steps[T]) -> T:
        """Run the steps of a read."""

    @abstractmethod
    async def _write(self, steps: Steps[T], *, single: bool = False) -> T:
        """Run the steps of a write in one transaction, durable when this returns (`single`: it
        is one statement, atomic by itself)."""

    @abstractmethod
    async def close(self) -> None: ...

    # -- jobs ---------------------------------------------------------------------------------
    async def create(self, job: NewJob) -> tuple[Job, bool]:
        return await self._write(ops.create(self.dialect, job))

    async def delete(self, job_id: str) -> None:
        await self._write(ops.delete(self.dialect, job_id), single=True)

    async def mark_published(self, job_id: str) -> None:
        await self._write(ops.mark_published(self.dialect, job_id), single=True)

    async def claim_publish(self, job_id: str, now_ms: int, lease_ms: int,
                            grace_ms: int = 0) -> PublishClaim:
        return await self._write(ops.claim_publish(self.dialect, job_id, now_ms, lease_ms,
                                                   grace_ms))

    async def release_publish(self, job_id: str) -> None:
        await self._write(ops.release_publish(self.dialect, job_id), single=True)

    async def abandon_unpublished(self, leased_before_ms: int,
                                  at_ms: int) -> list[tuple[str, str]]:
        return await self._write(ops.abandon_unpublished(self.dialect, leased_before_ms, at_ms))

    async def get(self, job_id: str) -> Job | None:
        return await self._read(ops.get(self.dialect, job_id))

    async def recent(self, limit: int, status: str | None = None, method: str | None = None,
                     owner: str | None = None) -> list[Job]:
        return await self._read(ops.recent(self.dialect, limit, status, method, owner))

    async def owner(self, job_id: str) -> str | None:
        return await self._read(ops.owner(self.dialect, job_id))

    async def started(self, job_id: str, worker: str | None, attempt: int, at_ms: int) -> bool:
        return await self._write(ops.started(self.dialect, job_id, worker, attempt, at_ms))

    async def progress(self, job_id: str, fraction: float, note: str, n: int | None = None,
                       attempt: int | None = None) -> bool:
        return await self._write(ops.progress(self.dialect, job_id, fraction, note, n, attempt))

    async def progress_recorded(self, job_id: str, attempt: int | None = None) -> int:
        return await self._read(ops.progress_recorded(self.dialect, job_id, attempt))

    async def events(self, job_id: str, after: int = 0) -> list[JobEventRecord]:
        return await self._read(ops.events(self.dialect, job_id, after))

    async def latest_seqs(self, job_ids: Sequence[str]) -> dict[str, int]:
        return await self._read(ops.latest_seqs(self.dialect, job_ids))

    async def finish(self, job_id: str, status: JobStatus, result: Any, error: ErrorBody | None,
                     at_ms: int, worker: str | None = None, attempt: int | None = None,
                     started_ms: int | None = None) -> str | None:
        return await self._write(ops.finish(self.dialect, job_id, status, result, error, at_ms,
                                            worker, attempt, started_ms))

    async def cancel_queued(self, job_id: str, at_ms: int) -> bool:
        return await self._write(ops.cancel_queued(self.dialect, job_id, at_ms))

    async def request_cancel(self, job_id: str) -> bool:
        return await self._write(ops.request_cancel(self.dialect, job_id), single=True) > 0

    async def pending_cancels(self, since_ms: int) -> list[tuple[str, str]]:
        return await self._read(ops.pending_cancels(self.dialect, since_ms))

    async def cancel_seen(self, job_id: str) -> None:
        await self._write(ops.cancel_seen(self.dialect, job_id), single=True)

    async def purge(self, finished_before_ms: int, cancels_since_ms: int) -> int:
        async def delete_batch(size: int) -> int:  # each batch its own transaction
            return await self._write(ops.purge_batch(self.dialect, finished_before_ms,
                                                     cancels_since_ms, size), single=True)

        return await purge_in_batches(delete_batch, self.purge_batch)

    # -- outbox -------------------------------------------------------------------------------
    async def claim_deliveries(self, now_ms: int | None, limit: int,
                               lease_ms: int) -> list[Delivery]:
        return await self._write(ops.claim_deliveries(self.dialect, now_ms, limit, lease_ms),
                                 single=True)

    async def delivery_outcome(self, delivery: Delivery, *, delivered: bool, error: str | None,
                               retry_at_ms: int | None) -> bool:
        return bool(await self._write(ops.delivery_outcome(
            self.dialect, delivery, delivered, error, retry_at_ms), single=True))
