"""A pool whose cache is a dict of many small Python objects (about 60 MiB), and the same data as
a SharedMapping: what a newcomer writes first, and what the docs tell them to write."""

from __future__ import annotations

import os

from workers import Pool, SharedMapping

ENTRIES = int(os.environ.get("RPCFLEET_TEST_ENTRIES", "200000"))


def _products() -> dict[int, dict[str, object]]:
    return {i: {"id": i, "name": f"product {i}", "price": i / 2, "tags": ["a", "b"]}
            for i in range(ENTRIES)}


pool = Pool("objects", cache=_products)
shared = Pool("shared", cache=lambda: SharedMapping(_products()))


@pool.method
def read_all(params: dict[str, object], cache: dict[int, dict[str, object]]) -> float:
    return sum(float(cache[i]["price"]) for i in range(ENTRIES))  # type: ignore[arg-type]


@shared.method
def read_all_shared(params: dict[str, object], cache: SharedMapping) -> float:
    return sum(float(cache[i]["price"]) for i in range(ENTRIES))
