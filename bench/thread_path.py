"""A plain `def` handler on a handler thread against the same handler `async def` on the loop:
the ~5 ms pure-Python handler of `bench peers` scenario 2, 2 consumer processes, c=16.

    ./run bench thread_path [--rounds 7] [--seconds 10] [--prefetch auto] [--intervals 0.005 0.02]

One broker; for each switch interval (RPCFLEET_SWITCH_INTERVAL, Python's GIL switch interval in
the consumers) a gateway and a worker pool of their own (own vhost). The pool's two methods
(`bench.pools`: `burn` on a handler thread, `burn_inline` on the loop) do the same work; the
modes are measured in rotating order, round after round; before each sample the ideal is
measured again (both cores running nothing but the handler: `bench.peers.work.ideal_rate`).
For each mode: req/s against the loop's of the same round, the share of the ideal (medians over
the rounds) and, per call, where the time went (bench/procstat.py): CPU of the consumers' loop
threads and of their other threads (the handler threads), time runnable but waiting for a core,
and context switches, voluntary (it waited: I/O, a lock, the GIL) and involuntary (preempted);
the same for the gateway and the broker. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.harness import RPCFLEET, children, env_with, post_script, private_broker, process
from bench.peers import work
from bench.procstat import Usage, thread_usage, usage
from bench.rpc import wait_http, wrk
from rpcfleet.broker import free_port

THREAD, LOOP = "/v1/rpc/burn", "/v1/rpc/burn_inline"
BODY = "{}"


@dataclass(frozen=True)
class Sample:
    mode: str
    rps: float
    ideal: float
    calls: int
    consumers_loop: Usage  # the consumers' main threads (their event loops)
    consumers_other: Usage  # their other threads: handler threads, libuv's pool
    gateway: Usage
    broker: Usage

    @property
    def share(self) -> float:
        return self.rps / self.ideal

    @property
    def cpu_per_call_ms(self) -> float:
        """Consumers, gateway and broker together (not `wrk`)."""
        spent = self.consumers_loop + self.consumers_other + self.gateway + self.broker
        return spent.cpu_s / self.calls * 1000


def consumer_threads(supervisor: int) -> tuple[Usage, Usage]:
    """(main threads, other threads) of the supervisor's child processes (its consumers)."""
    loops, others = Usage(), Usage()
    for pid in children(supervisor):
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                if task.name == str(pid):
                    loops = loops + thread_usage(task)
                else:
                    others = others + thread_usage(task)
        except (OSError, IndexError, ValueError):
            continue
    return loops, others


def prefetches(gateway_url: str) -> str:
    """The consumers' prefetch as the fleet view shows it (`auto` sizes it per consumer)."""
    entries = httpx.get(f"{gateway_url}/v1/workers", timeout=5).json()
    return "/".join(str(entry["prefetch"]) for entry in entries)


def per_call(spent: Usage, calls: int) -> str:
    return (f"user {spent.user_s / calls * 1e6:7.0f}  sys {spent.system_s / calls * 1e6:5.0f}  "
            f"waiting {spent.waiting_s / calls * 1e6:6.0f} us  "
            f"switches vol {spent.voluntary / calls:5.2f}  invol {spent.involuntary / calls:5.2f}")


@dataclass(frozen=True)
class Mode:
    name: str
    path: str
    pair: int  # which (gateway, worker) pair serves it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--prefetch", default="auto")
    parser.add_argument("--intervals", type=float, nargs="+", default=[0.005, 0.02],
                        help="RPCFLEET_SWITCH_INTERVAL of each pool measured with the handler on "
                             "a thread (the loop mode runs on the last)")
    args = parser.parse_args()

    rounds, handler_ms = work.calibrate()
    os.environ[work.ROUNDS_ENV] = str(rounds)
    print(f"handler calibrated: {rounds} rounds, {handler_ms:.2f} ms on a busy core", flush=True)
    modes = [*(Mode(f"thread, switch interval {interval * 1000:g} ms", THREAD, n)
               for n, interval in enumerate(args.intervals)),
             Mode("loop (async def)", LOOP, len(args.intervals) - 1)]
    samples: list[Sample] = []
    with private_broker() as node, tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        logs = Path(folder)
        pairs = []
        for n, interval in enumerate(args.intervals):  # each pair its own vhost, own queues
            vhost = f"pair{n}"
            node.ctl("add_vhost", vhost)
            node.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
            env = env_with(RPCFLEET_AMQP_URL=f"{node.amqp_url.rstrip('/')}/{vhost}",
                           RPCFLEET_STATE_DIR=logs / f"state{n}",
                           RPCFLEET_SWITCH_INTERVAL=interval, **{work.ROUNDS_ENV: rounds})
            port = free_port()
            gateway = stack.enter_context(process(
                [*RPCFLEET, "gateway", "--port", str(port), "--workers", "1"], env,
                logs / f"gateway{n}.log"))
            worker = stack.enter_context(process(
                [*RPCFLEET, "worker", "bench.pools:pool", "--processes", "2", "--prefetch",
                 args.prefetch], env, logs / f"worker{n}.log"))
            pairs.append((f"http://127.0.0.1:{port}", gateway.pid, worker.pid))
        script = post_script(logs / "post.lua", BODY)
        for mode in modes:
            wait_http(pairs[mode.pair][0] + mode.path, BODY, request_timeout=60)
        broker_pid = int(node.pid_file.read_text())
        for round_ in range(args.rounds):
            shift = round_ % len(modes)  # each mode first in turn
            for mode in modes[shift:] + modes[:shift]:
                url, gateway_pid, worker_pid = pairs[mode.pair]
                ideal = work.ideal_rate(rounds)
                wrk(url + mode.path, 16, 2, script)  # warm-up
                prefetch = prefetches(url)
                loops0, others0 = consumer_threads(worker_pid)
                gateway0, broker0 = usage(gateway_pid), usage(broker_pid)
                rps, _, _, errors, calls = wrk(url + mode.path, 16, args.seconds, script)
                loops1, others1 = consumer_threads(worker_pid)
                sample = Sample(mode.name, rps, ideal, calls, loops1 - loops0,
                                others1 - others0, usage(gateway_pid) - gateway0,
                                usage(broker_pid) - broker0)
                samples.append(sample)
                print(f"round {round_ + 1} {mode.name:32} {rps:6.0f} req/s  ideal {ideal:5.0f}"
                      f"  {sample.share:5.1%}  CPU {sample.cpu_per_call_ms:5.2f} ms a call  "
                      f"prefetch {prefetch}  errors {errors}", flush=True)
    report([mode.name for mode in modes], samples)


def report(names: list[str], samples: list[Sample]) -> None:
    loop = [s for s in samples if s.mode == names[-1]]
    for name in names[:-1]:
        thread = [s for s in samples if s.mode == name]
        ratios = [t.rps / o.rps for t, o in zip(thread, loop, strict=True)]
        print(f"\n{name} / loop, req/s round by round: {' '.join(f'{r:.3f}' for r in ratios)};"
              f" median {statistics.median(ratios):.3f}")
    print("\nmedians per mode; per call (medians of each figure over the rounds):")
    for name in names:
        mine = [s for s in samples if s.mode == name]
        share = statistics.median(s.share for s in mine)
        spread = f"{min(s.share for s in mine):.1%}-{max(s.share for s in mine):.1%}"
        print(f"\n{name}: {statistics.median(s.rps for s in mine):.0f} req/s, "
              f"{share:.1%} of the ideal (rounds {spread}), CPU a call "
              f"{statistics.median(s.cpu_per_call_ms for s in mine):.2f} ms")
        for part in ("consumers_loop", "consumers_other", "gateway", "broker"):
            usages = [(getattr(s, part), s.calls) for s in mine]
            middle = Usage(*(statistics.median(getattr(u, f) / c for u, c in usages)
                             for f in ("user_s", "system_s", "waiting_s", "voluntary",
                                       "involuntary")))
            print(f"  {part:16} {per_call(middle, 1)}")


if __name__ == "__main__":
    main()
