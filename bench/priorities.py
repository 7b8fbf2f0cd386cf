"""What a pool queue's priority levels cost the broker (issue 26: fewer broker priority levels).

    ./run bench priorities [--messages 20000] [--rounds 3] [--levels 10 5 2 0]

One private broker. For each `x-max-priority` (0: a plain classic queue), one connection
publishes `--messages` small messages (mandatory, publisher confirms, a window of 64 in flight,
priority = the queue's top, as a sync call is) and another consumes them at prefetch 1, acking
each: the shape of rpcfleet's sync calls. Levels are measured in alternating rounds; it prints
the broker's CPU per message (user and system, bench/procstat.py) and the messages per second,
median over the rounds. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import aio_pika

from bench.harness import private_broker
from bench.procstat import usage

WINDOW = 64


async def one_round(url: str, broker_pid: int, levels: int,
                    messages: int) -> tuple[float, float]:
    """(broker CPU µs per message, messages per second)."""
    name = f"bench.priorities.{levels}"
    arguments: dict[str, Any] = {"x-max-priority": levels} if levels else {}
    publisher = await aio_pika.connect(url)
    consumer = await aio_pika.connect(url)
    try:
        out = await publisher.channel(publisher_confirms=True)
        queue = await out.declare_queue(name, durable=True, arguments=arguments)
        await queue.purge()
        body = b'{"query": "the quick brown fox", "k": 10}' * 4
        inbound = await consumer.channel()
        await inbound.set_qos(prefetch_count=1)
        taken = await inbound.get_queue(name)
        received = 0
        done = asyncio.Event()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received
            await message.ack()
            received += 1
            if received == messages:
                done.set()

        top = levels or None
        before = usage(broker_pid)
        started = time.monotonic()
        tag = await taken.consume(on_message)
        sent = 0
        while sent < messages:
            batch = min(WINDOW, messages - sent)
            await asyncio.gather(*(out.default_exchange.publish(
                aio_pika.Message(body, priority=top), routing_key=name, mandatory=True)
                for _ in range(batch)))
            sent += batch
        await asyncio.wait_for(done.wait(), timeout=300)
        took = time.monotonic() - started
        spent = usage(broker_pid) - before
        await taken.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
        return spent.cpu_s / messages * 1e6, messages / took
    finally:
        await consumer.close()
        await publisher.close()


async def run(args: argparse.Namespace) -> None:
    with private_broker() as node:
        broker_pid = int(node.pid_file.read_text())
        figures: dict[int, list[tuple[float, float]]] = {level: [] for level in args.levels}
        for round_ in range(args.rounds):
            for level in args.levels:
                cpu, rate = await one_round(node.amqp_url, broker_pid, level, args.messages)
                figures[level].append((cpu, rate))
                print(f"  round {round_ + 1}: x-max-priority {level or '-'}: {cpu:.0f} µs "
                      f"broker CPU a message, {rate:,.0f} messages/s", flush=True)
    print(f"\n{args.messages:,} messages a round, {args.rounds} rounds")
    print("| x-max-priority | broker CPU µs / message (median) | messages/s (median) |")
    print("|---|---|---|")
    for level in args.levels:
        cpus = [cpu for cpu, _ in figures[level]]
        rates = [rate for _, rate in figures[level]]
        print(f"| {level or 'none'} | {statistics.median(cpus):.0f} "
              f"| {statistics.median(rates):,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--levels", type=int, nargs="+", default=[10, 5, 2, 0])
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
