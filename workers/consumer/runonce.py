"""A request runs once in this consumer, even when its channel closes under it.

The broker closes a channel whose delivery stays unacked past its consumer_timeout (or on a 406),
and redelivers what it held, often to this same consumer. The handler (or the request's place in
a batch) runs in a task the delivery does not own: when aiormq cancels the delivery's task, the
handler still finishes and its reply is still sent (`_settle_orphan`); the redelivery joins that
run, or is answered with the outcome it had (the last `OUTCOMES_REMEMBERED`), instead of running
it again. A redelivery to another consumer runs it again: at least once (docs/guarantees.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Coroutine
from typing import Any

from protocol import ErrorCode
from protocol.clock import now_ms
from protocol.requests import read_attempt
from workers.consumer.delivery import Delivery
from workers.consumer.outcome import Outcome, failure
from workers.consumer.settling import Settle, Settler

log = logging.getLogger("rpcfleet.worker")

# Outcomes kept to answer a redelivery of a request this consumer already ran (its channel closed
# before the ack): a channel's worth of deliveries is at most the prefetch, 1,000 covers it.
OUTCOMES_REMEMBERED = 1000


class RunOnce:
    def __init__(self, settler: Settler) -> None:
        self.settler = settler
        self.runs: dict[str, asyncio.Future[Settle]] = {}  # job id -> its run, under way here
        self.recent: OrderedDict[str, Outcome] = OrderedDict()  # job id -> how it ended here
        self._orphans: set[asyncio.Task[None]] = set()

    async def answered(self, message: Delivery) -> bool:
        """A redelivery of a request run here (under way or ended): answer it with that run's
        outcome and say so (True); False: it has to be decided and maybe run."""
        joined = self._join(message)
        if joined is None:
            return False
        ran = await asyncio.shield(joined)
        await self.settler.settle(message, Settle(read_attempt(message.headers), reply=ran.reply))
        return True

    async def run(self, message: Delivery, work: Coroutine[Any, Any, Settle]) -> Settle:
        """`work` in a task of its own, known to redeliveries of the same request."""
        job_id = str(message.correlation_id)
        started = now_ms()
        task = asyncio.ensure_future(work)
        self.runs[job_id] = task
        task.add_done_callback(lambda done: self._ran(job_id, done))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and current is not None and not current.cancelling():
                # Nothing cancels a run but its own handler (calling its task's cancel): its
                # request fails alone, answered, rather than left unsettled.
                # It ran: the answer says when (a gateway counts the start by it).
                return Settle(read_attempt(message.headers), reply=dataclasses.replace(failure(
                    ErrorCode.WORKER_ERROR, "CancelledError: the handler cancelled its own run"),
                    started_at=started, finished_at=now_ms()))
            orphan = asyncio.ensure_future(self._settle_orphan(message, task))
            self._orphans.add(orphan)
            orphan.add_done_callback(self._orphans.discard)
            raise

    def _join(self, message: Delivery) -> asyncio.Future[Settle] | None:
        job_id = message.correlation_id
        if not message.redelivered or not job_id:
            return None
        running = self.runs.get(job_id)
        if running is not None:
            return running
        outcome = self.recent.get(job_id)
        if outcome is None:
            return None
        done: asyncio.Future[Settle] = asyncio.get_running_loop().create_future()
        done.set_result(Settle(read_attempt(message.headers), reply=outcome))
        return done

    def _ran(self, job_id: str, task: asyncio.Task[Settle]) -> None:
        self.runs.pop(job_id, None)
        if not task.cancelled() and task.exception() is None:
            settled = task.result()
            reply = settled.reply
            # A dead-lettered end (a request that expired in its batch) is decided again on a
            # redelivery, so that the dead-letter copy is made then too; a reply alone is not.
            if reply is not None and not reply.must_exit and settled.dead is None:
                self.recent[job_id] = reply
                while len(self.recent) > OUTCOMES_REMEMBERED:
                    self.recent.popitem(last=False)

    async def _settle_orphan(self, message: Delivery, task: asyncio.Task[Settle]) -> None:
        try:
            await self.settler.settle(message, await task)
        except Exception as exc:  # its channel is gone: the reply went out if it could
            log.info("%s finished after its channel closed (%r); the broker redelivers it and "
                     "this consumer answers that with the same outcome", message.correlation_id,
                     exc)
