"""The peers' figures: a median over rounds, the tables, and the plot of requests/s and p99
against concurrency (`./run bench peers`)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from bench.peers.work import handler_ms


@dataclass
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_ms: float  # per request, gateway + worker + broker
    ideal: float = 0.0  # scenario 2: handlers/s with every core on nothing else, just before


def median(samples: list[Sample]) -> Sample:
    return Sample(*(statistics.median(getattr(s, f) for s in samples)
                    for f in ("rps", "p50_ms", "p99_ms", "errors", "cpu_ms", "ideal")))


def report(callers: list[str], concurrencies: list[int],
           echo: dict[tuple[str, int], list[Sample]], burn: dict[str, list[Sample]],
           jobs: dict[tuple[str, str], list[Sample]], rss: dict[str, float]) -> None:
    if echo:
        _echo(callers, concurrencies, echo)
    if burn:
        _burn(burn)
    if jobs:
        _jobs(jobs)
    if rss:
        print("\n4. gateway RSS after the calls above")
        print("| system | RSS MiB |\n|---|---|")
        for name, mib in rss.items():  # one decimal: the target is 60 MiB, a line to read
            print(f"| {name} | {mib:.1f} |")


def _echo(callers: list[str], concurrencies: list[int],
          echo: dict[tuple[str, int], list[Sample]]) -> None:
    print("\n1. echo (medians) | system | c | req/s | p50 ms | p99 ms | errors | CPU ms per call "
          "| rpcfleet ÷ this |")
    print("|---|---|---|---|---|---|---|---|")
    for concurrency in concurrencies:
        ours = echo.get(("rpcfleet", concurrency))
        for name in callers:
            m = median(echo[(name, concurrency)])
            ratio = f"{median(ours).rps / m.rps:.2f}x" if ours and name != "rpcfleet" else ""
            print(f"| {name} | {concurrency} | {m.rps:,.0f} | {m.p50_ms:.1f} | "
                  f"{m.p99_ms:.1f} | {m.errors:.0f} | {m.cpu_ms:.2f} | {ratio} |")


def _burn(burn: dict[str, list[Sample]]) -> None:
    print("\n2. ~5 ms pure-Python handler, 2 worker processes, c=16 (the ideal: both cores "
          "running nothing but the handler, measured just before each sample)")
    print("| system | req/s | handler ms | ideal req/s | % of ideal | p99 ms |\n"
          "|---|---|---|---|---|---|")
    for name, samples in burn.items():
        m = median(samples)
        share = statistics.median(s.rps / s.ideal for s in samples)
        print(f"| {name} | {m.rps:,.0f} | {handler_ms(m.ideal):.2f} | {m.ideal:,.0f} | "
              f"{100 * share:.0f} % | {m.p99_ms:.1f} |")


def _jobs(jobs: dict[tuple[str, str], list[Sample]]) -> None:
    print("\n3. jobs at c=64 | system | phase | jobs/s | p99 ms | CPU ms per job |")
    print("|---|---|---|---|---|")
    for (name, phase), samples in jobs.items():
        m = median(samples)
        print(f"| {name} | {phase} | {m.rps:,.0f} | {m.p99_ms:.1f} | {m.cpu_ms:.2f} |")


def plot(callers: list[str], concurrencies: list[int],
         echo: dict[tuple[str, int], list[Sample]], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in callers:
        medians = [median(echo[(name, c)]) for c in concurrencies]
        left.plot(concurrencies, [m.rps for m in medians], marker="o", label=name)
        right.plot(concurrencies, [m.p99_ms for m in medians], marker="o", label=name)
    for axis, label in ((left, "requests/s"), (right, "p99 latency, ms")):
        axis.set_xscale("log", base=2)
        axis.set_xticks(concurrencies, [str(c) for c in concurrencies])
        axis.set_xlabel("concurrent clients")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    left.set_yscale("log")
    right.set_yscale("log")
    left.legend(fontsize=7, loc="center right")
    figure.suptitle("echo through the broker: one gateway process, one worker at prefetch 1")
    figure.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=110)
    print(f"\nplot: {target}")
