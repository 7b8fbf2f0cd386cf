"""The fleet (admin): live workers, pools with their queues, live prefetch changes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from gateway.errors import NotFound, Overloaded
from gateway.fleet.queues import QueueCounts
from gateway.routes.deps import require_admin, services
from protocol import PrefetchValue, SetPrefetch, WorkerEntry, codec, names

router = APIRouter(tags=["fleet"], dependencies=[Depends(require_admin)])


class PrefetchBody(BaseModel):
    prefetch: PrefetchValue = Field(description="1-1000, or auto", examples=[4, "auto"])


class PoolInfo(BaseModel):
    pool: str
    methods: list[str]
    queue_depth: int | None
    consumers: int | None
    dead_letters: int | None = Field(
        description="messages in rpcfleet.dead.{pool} (see `rpcfleet dead POOL`)")


@router.get("/v1/workers", response_model=list[WorkerEntry],
            summary="One entry per consumer process, from their beats")
async def workers(request: Request) -> Response:
    entries = services(request).view.workers()
    return Response(codec.dumps([e.model_dump(mode="json", exclude={"docs"}) for e in entries]),
                    media_type="application/json")


@router.get("/v1/pools", response_model=list[PoolInfo],
            summary="Pools with their queue depth and consumer count")
async def pools(request: Request) -> list[PoolInfo]:
    found = services(request)
    counts = found.queues.snapshot()
    return [_pool_info(pool, methods, counts.get(pool))
            for pool, methods in sorted(found.view.pools().items())]


def _pool_info(pool: str, methods: list[str], counts: QueueCounts | None) -> PoolInfo:
    if counts is None:  # not polled yet
        return PoolInfo(pool=pool, methods=methods, queue_depth=None, consumers=None,
                        dead_letters=None)
    return PoolInfo(pool=pool, methods=methods, queue_depth=counts.messages,
                    consumers=counts.consumers, dead_letters=counts.dead_letters)


async def _send(request: Request, key: str, body: PrefetchBody) -> dict[str, Any]:
    link = services(request).link
    if not link.up or not await link.send_control(SetPrefetch(prefetch=body.prefetch), key,
                                                  confirm=True):
        raise Overloaded("the broker is unreachable")
    return {"accepted": True, "target": key, "prefetch": body.prefetch}


@router.put("/v1/pools/{pool}/prefetch", status_code=202,
            summary="Set the prefetch of every consumer of a pool, live")
async def pool_prefetch(pool: str, body: PrefetchBody, request: Request) -> dict[str, Any]:
    if pool not in services(request).view.pools():
        raise NotFound(f"no pool {pool!r} has announced itself")
    return await _send(request, names.control_pool_key(pool), body)


@router.put("/v1/workers/{worker_id}/prefetch", status_code=202,
            summary="Set the prefetch of one consumer, live")
async def worker_prefetch(worker_id: str, body: PrefetchBody,
                          request: Request) -> dict[str, Any]:
    if services(request).view.worker(worker_id) is None:
        raise NotFound(f"no live worker {worker_id!r}")
    return await _send(request, names.control_worker_key(worker_id), body)
