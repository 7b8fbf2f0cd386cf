"""A small AMQP-level test client: publishes requests as a gateway would, reads replies by
correlation id over direct reply-to, and reads what lands in queues (dead letters, replies)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from protocol import Reply, codec, names, replies
from protocol.clock import now_ms


@dataclass
class Answer:
    reply: Reply
    worker: str | None
    attempt: int | None


class TestClient:
    __test__ = False  # not a test class for pytest

    def __init__(self, channel: AbstractChannel) -> None:
        self.channel = channel
        self.pending: dict[str, asyncio.Future[AbstractIncomingMessage]] = {}

    async def start(self) -> None:
        queue = await self.channel.get_queue(names.DIRECT_REPLY_TO, ensure=False)
        await queue.consume(self._on_reply, no_ack=True)

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self.pending.get(message.correlation_id or "")
        if future is not None and not future.done():
            future.set_result(message)

    async def send(self, method: str, params: Any = None, *, body: bytes | None = None,
                   timeout: float = 10.0, job_id: str | None = None,
                   reply_to: str | None = names.DIRECT_REPLY_TO,
                   headers: dict[str, Any] | None = None,
                   correlation_id: str | None = "auto", deadline_ms: int | None = None,
                   priority: int = names.SYNC_PRIORITY, persistent: bool = False) -> str:
        job_id = job_id or uuid.uuid4().hex
        deadline = deadline_ms if deadline_ms is not None else now_ms() + int(timeout * 1000)
        all_headers: dict[str, Any] = {names.HEADER_ATTEMPT: 1, names.HEADER_DEADLINE: deadline}
        all_headers.update(headers or {})
        message = aio_pika.Message(
            body if body is not None else codec.dumps(params if params is not None else {}),
            content_type=names.CONTENT_TYPE,
            correlation_id=job_id if correlation_id == "auto" else correlation_id,
            message_id=job_id,
            type=method,
            reply_to=reply_to,
            priority=priority,
            headers=all_headers,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT if persistent else None,
        )
        if reply_to == names.DIRECT_REPLY_TO:
            self.pending[job_id] = asyncio.get_running_loop().create_future()
        exchange = await self.channel.get_exchange(names.EXCHANGE)
        await exchange.publish(message, routing_key=method, mandatory=False)
        return job_id

    async def answer(self, job_id: str, timeout: float = 10.0) -> Answer:
        message = await asyncio.wait_for(self.pending[job_id], timeout)
        del self.pending[job_id]
        headers = message.headers or {}
        worker = headers.get(names.HEADER_WORKER)
        attempt = headers.get(names.HEADER_ATTEMPT)
        return Answer(replies.decode(message.body), str(worker) if worker else None,
                      int(attempt) if attempt is not None else None)  # type: ignore[arg-type]

    async def call(self, method: str, params: Any = None, timeout: float = 10.0) -> Answer:
        job_id = await self.send(method, params, timeout=timeout)
        return await self.answer(job_id, timeout)

    async def drain_queue(self, queue_name: str, expect: int, timeout: float = 10.0,
                          missing_ok: bool = False) -> list[AbstractIncomingMessage]:
        """Take `expect` messages from a queue (acking them), waiting up to `timeout`
        (`missing_ok`: then answer what came, rather than fail)."""
        queue = await self.channel.declare_queue(queue_name, passive=True)
        got: list[AbstractIncomingMessage] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(got) < expect:
            message = await queue.get(fail=False, no_ack=True)
            if message is None:
                if asyncio.get_running_loop().time() > deadline:
                    if missing_ok:
                        return got
                    raise AssertionError(f"{queue_name}: got {len(got)} of {expect} messages")
                await asyncio.sleep(0.05)
                continue
            got.append(message)
        return got


@asynccontextmanager
async def amqp_client(amqp_url: str) -> AsyncIterator[TestClient]:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        client = TestClient(channel)
        await client.start()
        yield client
