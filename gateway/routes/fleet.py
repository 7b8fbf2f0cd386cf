"""The fleet (admin): live workers, pools with their queues, live prefetch and process-range
changes, dead letters.

Their bodies are JSON whatever Content-Type claims (`curl -d` sends a form type), as the sync
route reads them: `JsonBodyRoute`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any

import aiormq
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, StrictInt

from gateway.errors import BadRequest, Conflict, NotFound, Overloaded
from gateway.fleet.queues import QueueCounts
from gateway.routes.deps import require_admin, services
from protocol import PrefetchValue, SetPrefetch, SetProcesses, WorkerEntry, codec, names
from protocol.dead import DeadLetter
from protocol.jobs import JOB_TIMEOUT_MAX_S
from transport.deadletters import (
    SCAN_MAX,
    DeadLetterQueue,
    ReplayRefused,
    dead_letter_session,
)


class JsonBodyRoute(APIRoute):
    """A route whose body is read as JSON whatever its Content-Type says."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def as_json(request: Request) -> Response:
            headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
            headers.append((b"content-type", b"application/json"))
            return await handler(Request({**request.scope, "headers": headers},
                                         request.receive))

        return as_json


router = APIRouter(tags=["fleet"], dependencies=[Depends(require_admin)],
                   route_class=JsonBodyRoute)


class PrefetchBody(BaseModel):
    prefetch: PrefetchValue = Field(description="1-1000, or auto", examples=[4, "auto"])


class PoolInfo(BaseModel):
    pool: str
    methods: list[str]
    queue_depth: int | None
    consumers: int | None
    dead_letters: int | None = Field(
        description="messages in rpcfleet.dead.{pool} (see `rpcfleet dead POOL`)")
    clashes: dict[str, list[str]] = Field(
        default_factory=dict,
        description="(1.2) methods of this pool that live workers of another pool announce too, "
                    "with every pool announcing each: such a call runs in each of them")
    retired: bool = Field(default=False,
                          description="(1.2) taken out of service: its queue is gone")
    retiring: dict[str, Any] | None = Field(
        default=None,
        description="(1.2) a retirement under way through this gateway process: drain, state "
                    "(unbound, draining, leaving, dead-lettering, deleted, failed: ...), "
                    "dead_lettered")


@router.get("/v1/workers", response_model=list[WorkerEntry],
            summary="One entry per consumer process, from their beats")
async def workers(request: Request) -> Response:
    entries = services(request).view.listing()
    return Response(codec.dumps([e.model_dump(mode="json", exclude={"docs"}) for e in entries]),
                    media_type="application/json")


@router.get("/v1/pools", response_model=list[PoolInfo],
            summary="Pools with their queue depth and consumer count")
async def pools(request: Request) -> list[PoolInfo]:
    found = services(request)
    counts = found.queues.snapshot()
    clashes = found.view.clashes()
    infos = []
    for pool, methods in sorted(found.view.pools().items()):
        info = _pool_info(pool, methods, counts.get(pool),
                          {m: pools for m, pools in clashes.items() if pool in pools})
        info.retired = found.view.is_retired(pool)
        retirement = found.retirements.running.get(pool)
        if retirement is not None:
            info.retiring = {"drain": retirement.drain, "state": retirement.state,
                             "dead_lettered": retirement.dead_lettered}
        infos.append(info)
    return infos


def _pool_info(pool: str, methods: list[str], counts: QueueCounts | None,
               clashes: dict[str, list[str]]) -> PoolInfo:
    if counts is None:  # not polled yet
        return PoolInfo(pool=pool, methods=methods, queue_depth=None, consumers=None,
                        dead_letters=None, clashes=clashes)
    return PoolInfo(pool=pool, methods=methods, queue_depth=counts.messages,
                    consumers=counts.consumers, dead_letters=counts.dead_letters,
                    clashes=clashes)


async def _send(request: Request, key: str, command: SetPrefetch | SetProcesses) -> None:
    """A control command the broker confirmed taking; `overloaded` when it cannot."""
    link = services(request).link
    if not link.up or not await link.send_control(command, key, confirm=True):
        raise Overloaded("the broker is unreachable")


def _known_pool(request: Request, pool: str) -> None:
    if pool not in services(request).view.pools():
        raise NotFound(f"no pool {pool!r} has announced itself")


@router.put("/v1/pools/{pool}/prefetch", status_code=202,
            summary="Set the prefetch of every consumer of a pool, live")
async def pool_prefetch(pool: str, body: PrefetchBody, request: Request) -> dict[str, Any]:
    _known_pool(request, pool)
    key = names.control_pool_key(pool)
    await _send(request, key, SetPrefetch(prefetch=body.prefetch))
    return {"accepted": True, "target": key, "prefetch": body.prefetch}


@router.put("/v1/workers/{worker_id}/prefetch", status_code=202,
            summary="Set the prefetch of one consumer, live")
async def worker_prefetch(worker_id: str, body: PrefetchBody,
                          request: Request) -> dict[str, Any]:
    if services(request).view.worker(worker_id) is None:
        raise NotFound(f"no live worker {worker_id!r}")
    key = names.control_worker_key(worker_id)
    await _send(request, key, SetPrefetch(prefetch=body.prefetch))
    return {"accepted": True, "target": key, "prefetch": body.prefetch}


class ProcessesBody(BaseModel):
    min: StrictInt = Field(ge=1, description="consumers each host keeps at least", examples=[1])
    max: StrictInt = Field(ge=1, description="consumers each host runs at most "
                                       "(RPCFLEET_MAX_PROCESSES bounds it)", examples=[8])


@router.put("/v1/pools/{pool}/processes", status_code=202,
            summary="(1.2) Set a pool's consumers per host, live: a range, or min = max")
async def pool_processes(pool: str, body: ProcessesBody, request: Request) -> dict[str, Any]:
    most = services(request).settings.max_processes
    if body.min > body.max:
        raise BadRequest(f"min ({body.min}) is above max ({body.max})")
    if body.max > most:
        raise BadRequest(f"max ({body.max}) is above this gateway's limit of {most} "
                         "(RPCFLEET_MAX_PROCESSES)")
    _known_pool(request, pool)
    key = names.control_pool_key(pool)
    await _send(request, key, SetProcesses(min=body.min, max=body.max))
    return {"accepted": True, "target": key, "processes": {"min": body.min, "max": body.max}}


@router.delete("/v1/pools/{pool}", status_code=202,
               summary="(1.2) Take a pool out of service: unbind it, serve (drain) or "
                       "dead-letter what is queued, stop its workers, delete its queue")
async def retire(pool: str, request: Request, drain: bool = False) -> dict[str, Any]:
    found = services(request)
    _known_pool(request, pool)
    if found.view.is_retired(pool):
        raise NotFound(f"pool {pool!r} is retired already")
    if found.retirements.under_way(pool) is not None:
        raise Conflict(f"pool {pool!r} is being retired already")
    if found.link.connection is None or not found.link.up:
        raise Overloaded("the broker is unreachable")
    try:
        retirement = await found.retirements.start(pool, found.view.pools()[pool], drain)
    except (ConnectionError, aiormq.exceptions.AMQPError) as exc:
        raise Overloaded(f"the broker could not unbind the pool: {exc}") from None
    return {"accepted": True, "pool": pool, "drain": drain, "state": retirement.state}


# -- dead letters (the fleet page and `rpcfleet dead` share transport.deadletters) ------------


class DeadAction(BaseModel):
    ids: list[str] = Field(min_length=1, max_length=SCAN_MAX)
    timeout: float | None = Field(None, gt=0, le=JOB_TIMEOUT_MAX_S, allow_inf_nan=False,
                                  description="replay: the new deadline, seconds from now")


@asynccontextmanager
async def _dead_letters(request: Request, pool: str) -> AsyncIterator[DeadLetterQueue]:
    found = services(request)
    if pool not in found.view.pools():
        raise NotFound(f"no pool {pool!r} has announced itself")
    if found.link.connection is None or not found.link.up:
        raise Overloaded("the broker is unreachable")
    async with dead_letter_session(found.link.connection, pool) as queue:
        yield queue


@router.get("/v1/pools/{pool}/dead", response_model=list[DeadLetter],
            summary="A pool's dead letters, oldest first (looking removes nothing)")
async def list_dead(pool: str, request: Request,
                    limit: Annotated[int, Query(ge=1, le=SCAN_MAX)] = 100
                    ) -> list[DeadLetter]:
    async with _dead_letters(request, pool) as queue:
        held = await queue.take()  # all of them, up to SCAN_MAX: a look keeps their order
    return [item.letter for item in held[:limit]]


@router.post("/v1/pools/{pool}/dead/replay",
             summary="Publish these dead letters to their pool again, afresh (attempt 1)")
async def replay_dead(pool: str, body: DeadAction, request: Request) -> dict[str, Any]:
    return await _settle_dead(request, pool, body, replay=True)


@router.post("/v1/pools/{pool}/dead/purge", summary="Remove these dead letters")
async def purge_dead(pool: str, body: DeadAction, request: Request) -> dict[str, Any]:
    return await _settle_dead(request, pool, body, replay=False)


async def _settle_dead(request: Request, pool: str, body: DeadAction,
                       replay: bool) -> dict[str, Any]:
    done: list[str] = []
    kept: list[dict[str, str]] = []
    wanted = set(body.ids)
    async with _dead_letters(request, pool) as queue:
        for item in await queue.take():
            if item.letter.id not in wanted:
                continue
            wanted.discard(item.letter.id)
            try:
                if replay:
                    await queue.replay(item, body.timeout)
                else:
                    await queue.purge(item)
                done.append(item.letter.id)
            except ReplayRefused as refused:
                kept.append({"id": item.letter.id, "reason": str(refused)})
    return {"replayed" if replay else "purged": done, "kept": kept,
            "not_found": sorted(wanted)}
