"""What the pieces of a sync call's hot path cost alone, in microseconds of one core: the timers a
gateway call starts (under uvloop, as `rpcfleet gateway` runs), and the AMQP frames each side
marshals and parses with pamqp (the request's publish and header, the reply's, the ack, a
delivery). Prints one line per piece; compare with the CPU a call costs in `bench rpc`.

    ./run bench hotpath
"""

from __future__ import annotations

import argparse
import asyncio
import time
import timeit
from collections.abc import Callable

import uvloop
from pamqp import frame
from pamqp.body import ContentBody
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from protocol import Request, names
from protocol.clock import now_ms

CALL_ID = "5f0c3d9a1b2c4d5e6f708192a3b4c5d6"
BODY = b'{"id":"5f0c3d9a1b2c4d5e6f708192a3b4c5d6","result":{"x":1}}'


def per_call_us(work: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(work, number=number, repeat=5)) / number * 1e6


async def timers(number: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()

    async def nothing() -> None:
        return None

    async def bare() -> None:
        for _ in range(number):
            await nothing()

    async def bounded(seconds: float | None) -> None:
        for _ in range(number):
            async with asyncio.timeout(seconds):
                await nothing()

    def later() -> None:
        for _ in range(number):
            loop.call_later(0.1, _noop).cancel()

    async def timed(run: Callable[[], object]) -> float:
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            result = run()
            if asyncio.iscoroutine(result):
                await result
            best = min(best, time.perf_counter() - started)
        return best / number * 1e6

    base = await timed(bare)
    return {"asyncio.timeout(s) around an await": await timed(lambda: bounded(5.0)) - base,
            "asyncio.timeout(None) around an await": await timed(lambda: bounded(None)) - base,
            "loop.call_later + cancel": await timed(later)}


def _noop() -> None:
    return None


def frames(number: int) -> dict[str, float]:
    request = Request(CALL_ID, "echo", names.DIRECT_REPLY_TO, now_ms() + 30_000,
                      priority=names.SYNC_PRIORITY)
    from gateway.amqp.rpc import request_properties

    request_props = request_properties(request)
    reply_props = Basic.Properties(
        content_type=names.CONTENT_TYPE, correlation_id=CALL_ID, message_id=CALL_ID,
        message_type="echo", delivery_mode=1,
        headers={names.HEADER_WORKER: "host-1:12345", names.HEADER_ATTEMPT: 1,
                 names.HEADER_STARTED_AT: now_ms(), names.HEADER_FINISHED_AT: now_ms()})
    publish = Basic.Publish(exchange="", routing_key="rpcfleet.pool.vectors", mandatory=True)
    deliver = frame.marshal(Basic.Deliver(consumer_tag="ctag1.abc", delivery_tag=5,
                                          exchange="", routing_key="rpcfleet.pool.vectors"), 1)
    header = frame.marshal(ContentHeader(properties=request_props, body_size=len(BODY)), 1)

    def parse_delivery() -> None:
        frame.unmarshal(deliver)
        frame.unmarshal(header)

    return {
        "marshal a request's publish + header + body (gateway)": per_call_us(
            lambda: (frame.marshal(publish, 1),
                     frame.marshal(ContentHeader(properties=request_props,
                                                 body_size=len(BODY)), 1),
                     frame.marshal(ContentBody(BODY), 1)), number),
        "marshal a reply's publish + header + body + ack (worker)": per_call_us(
            lambda: (frame.marshal(Basic.Publish(exchange="", routing_key=CALL_ID), 1),
                     frame.marshal(ContentHeader(properties=reply_props,
                                                 body_size=len(BODY)), 1),
                     frame.marshal(ContentBody(BODY), 1),
                     frame.marshal(Basic.Ack(delivery_tag=5), 1)), number),
        "of which the reply's header alone": per_call_us(
            lambda: frame.marshal(ContentHeader(properties=reply_props, body_size=len(BODY)), 1),
            number),
        "parse a delivery's method + header (either side)": per_call_us(parse_delivery, number),
        "build a reply's Basic.Properties": per_call_us(
            lambda: Basic.Properties(content_type=names.CONTENT_TYPE, correlation_id=CALL_ID,
                                     message_id=CALL_ID, message_type="echo", delivery_mode=1,
                                     headers={names.HEADER_WORKER: "w", names.HEADER_ATTEMPT: 1}),
            number),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--number", type=int, default=20_000)
    args = parser.parse_args()
    print("piece of a sync call's hot path                              us (best of 5)")
    for name, value in uvloop.run(timers(args.number)).items():
        print(f"  {name:58} {value:6.2f}")
    for name, value in frames(args.number).items():
        print(f"  {name:58} {value:6.2f}")


if __name__ == "__main__":
    main()
