"""Batched methods (SPEC 1.1): the example pool's `nearest` (a scan of the whole index per query)
against `nearest_batched` (up to 32 queries share one pass: a matrix product), same processes.

    ./run bench batching [--seconds 10] [--rounds 3] [--concurrency 64] [--cache-mb 256]
                         [--prefetch auto] [--blas-threads N]

One gateway process, one worker process at --prefetch auto (two batches: one runs, one gathers),
wrk as the load. The two methods alternate, each round after a 2 s warm-up; the figures are
medians over the rounds (this machine's speed drifts by tens of percent from minute to minute).
Prints requests/s, p50/p99, the ratio and the batch sizes the worker reports. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from contextlib import ExitStack
from pathlib import Path

import httpx

from bench.harness import RPCFLEET, env_with, private_broker, process
from bench.rpc import wait_http, wrk
from rpcfleet.broker import free_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--cache-mb", type=int, default=256)
    parser.add_argument("--prefetch", default="auto", help="the worker's: a number or auto")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--blas-threads", type=int,
                        help="the worker's OPENBLAS_NUM_THREADS (default: one a core)")
    args = parser.parse_args()
    blas = {} if args.blas_threads is None else {"OPENBLAS_NUM_THREADS": args.blas_threads,
                                                 "OMP_NUM_THREADS": args.blas_threads}
    with private_broker() as node, tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        logs = Path(tmp)
        env = env_with(RPCFLEET_AMQP_URL=node.amqp_url, RPCFLEET_STATE_DIR=logs / "state",
                       RPCFLEET_EXAMPLE_CACHE_MB=args.cache_mb, RPCFLEET_RPC_TIMEOUT_DEFAULT=60,
                       **blas)
        port = free_port()
        stack.enter_context(process([*RPCFLEET, "worker", "examples.vectors:pool",
                                     "--processes", "1", "--prefetch", args.prefetch], env,
                                    logs / "worker.log"))
        stack.enter_context(process([*RPCFLEET, "gateway", "--port", str(port)], env,
                                    logs / "gateway.log"))
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/v1/rpc/nearest", '{"vector_of": 1, "k": 10}')
        print(f"index {args.cache_mb} MiB, k=10, c={args.concurrency}, {args.seconds} s each, "
              f"{args.rounds} rounds, BLAS threads {args.blas_threads or 'default'}")
        print(f"{'method':<18} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
        methods = ("nearest", "nearest_batched")
        script = logs / "query.lua"
        script.write_text(
            "wrk.method = 'POST'\nwrk.headers['Content-Type'] = 'application/json'\n"
            "counter = 0\nrequest = function()\n  counter = counter + 1\n"
            "  return wrk.format(nil, nil, nil, '{\"vector_of\": ' .. (counter % 10000) "
            ".. ', \"k\": 10}')\nend\n")
        results: dict[str, list[tuple[float, float, float, int]]] = {m: [] for m in methods}
        for round_ in range(args.rounds):
            for method in methods:
                url = f"{base}/v1/rpc/{method}"
                wait_http(url, '{"vector_of": 2, "k": 10}')
                wrk(url, args.concurrency, 2, script)  # warm-up
                rps, p50, p99, errors, _ = wrk(url, args.concurrency, args.seconds, script)
                results[method].append((rps, p50, p99, errors))
                print(f"{method:<18} {rps:>8.1f} {p50:>8.1f} {p99:>8.1f} {errors:>7}   "
                      f"round {round_ + 1}", flush=True)
        medians = {m: [statistics.median(r[i] for r in results[m]) for i in range(4)]
                   for m in methods}
        for method in methods:
            rps, p50, p99, errors = medians[method]
            print(f"{method:<18} {rps:>8.1f} {p50:>8.1f} {p99:>8.1f} {errors:>7.0f}   median")
        ratios = [b[0] / a[0] for a, b in zip(results["nearest"], results["nearest_batched"],
                                                    strict=True)]
        print(f"batched / unbatched: {medians['nearest_batched'][0] / medians['nearest'][0]:.2f}x "
              f"(per round: {', '.join(f'{r:.2f}x' for r in ratios)})")
        workers = httpx.get(f"{base}/v1/workers", timeout=10).json()
        print("batch sizes:", json.dumps(workers[0].get("batches")))


if __name__ == "__main__":
    main()
