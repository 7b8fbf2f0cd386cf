"""prefetch=auto vs fixed prefetch values, for a 1 ms and a 200 ms handler.

    python -m bench.prefetch_auto

One consumer process (concurrency 1) of `bench.pools:pool`. For each setting the queue is filled
with M requests and the time until M replies have arrived gives the throughput. `auto` gets one
warm-up batch to measure and settle, then is measured like the others.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import aio_pika

from bench.harness import RPCFLEET, env_with, private_broker, process, wait_until
from protocol import SetPrefetch, WorkerEntry, codec, names
from tests.support.processes import consumer_count

DONE = "bench.done"
CASES = {"work_1ms": 3000, "work_200ms": 30}  # messages per run: a few seconds each
FIXED = (1, 2, 4, 8, 16, 32, 64)


class Bench:
    def __init__(self, url: str) -> None:
        self.url = url
        self.beats: list[WorkerEntry] = []

    async def __aenter__(self) -> Bench:
        self.connection = await aio_pika.connect(self.url)
        self.channel = await self.connection.channel()
        # Fill the queue without waiting on confirms, so the publisher never limits the rate.
        self.fast = await self.connection.channel(publisher_confirms=False)
        self.done = await self.channel.declare_queue(DONE, durable=True)
        events = await self.channel.declare_queue(exclusive=True)
        await events.bind(names.EVENTS_EXCHANGE, "worker.#")
        await events.consume(self._beat, no_ack=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()

    async def _beat(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.beats.append(WorkerEntry.model_validate_json(message.body))

    async def set_prefetch(self, value: int | str) -> None:
        exchange = await self.channel.get_exchange(names.CONTROL_EXCHANGE)
        await exchange.publish(aio_pika.Message(codec.dumps(SetPrefetch(prefetch=value))),  # type: ignore[arg-type]
                               routing_key=names.control_pool_key("timed"))
        if value != "auto":
            while not (self.beats and self.beats[-1].prefetch == value):  # noqa: ASYNC110
                await asyncio.sleep(0.02)  # beats arrive on the consumer callback: poll them

    async def run(self, method: str, count: int) -> float:
        await self.done.purge()
        exchange = await self.fast.get_exchange(names.EXCHANGE)
        started = time.perf_counter()
        for i in range(count):
            await exchange.publish(aio_pika.Message(b"{}", correlation_id=f"m{i}", type=method,
                                                    reply_to=DONE), routing_key=method)
        while True:
            declared = await self.channel.declare_queue(DONE, passive=True)
            if declared.declaration_result.message_count >= count:
                return count / (time.perf_counter() - started)
            await asyncio.sleep(0.02)


async def measure(url: str) -> list[tuple[str, str, float, str]]:
    rows = []
    async with Bench(url) as bench:
        for method, count in CASES.items():
            best = 0.0
            for value in FIXED:
                await bench.set_prefetch(value)
                rate = await bench.run(method, count)
                best = max(best, rate)
                rows.append((method, str(value), rate, ""))
                print(f"  {method} prefetch {value}: {rate:,.1f}/s", flush=True)
            await bench.set_prefetch(1)
            await bench.set_prefetch("auto")
            await bench.run(method, count)  # warm-up: auto measures and settles
            rate = await bench.run(method, count)
            settled = bench.beats[-1].prefetch
            rows.append((method, f"auto → {settled}", rate, f"{rate / best * 100:.0f}% of best"))
            print(f"  {method} auto ({settled}): {rate:,.1f}/s", flush=True)
    return rows


def main() -> None:
    with private_broker() as node, tempfile.TemporaryDirectory() as logs:
        env = env_with(RPCFLEET_AMQP_URL=node.amqp_url, RPCFLEET_BEAT_INTERVAL=1)
        with process([*RPCFLEET, "worker", "bench.pools:pool", "--processes", "1"], env,
                     Path(logs) / "worker.log"):
            wait_until(lambda: consumer_count(node.amqp_url, "rpcfleet.pool.timed") == 1, 60,
                       "the consumer")
            rows = asyncio.run(measure(node.amqp_url))
    print("\n| handler | prefetch | msgs/s | auto vs best fixed |")
    print("|---|---|---|---|")
    for method, value, rate, note in rows:
        print(f"| {method} | {value} | {rate:,.1f} | {note} |")


if __name__ == "__main__":
    main()
