"""A realistic cache-holding pool: a vector index held as ONE large numpy array.

The supervisor builds the index once (size from RPCFLEET_EXAMPLE_CACHE_MB, default 256 MiB); the
consumers it forks share its pages copy-on-write, so N processes cost about one index.

    rpcfleet worker examples.vectors:pool --processes 4
    curl -s localhost:8000/v1/rpc/nearest -d '{"vector_of": 42, "k": 3}'
"""

from __future__ import annotations

import os
import time

import numpy as np
from pydantic import BaseModel, Field, model_validator

from workers import JobContext, Pool

DIMENSIONS = 128  # float32: 512 bytes a row, so 256 MiB holds 524,288 vectors
# Rows scored per step. Small enough that a batch's scores (32 queries x 16,384 rows, 2 MiB)
# stay in the CPU's cache for the comparison pass that follows the product: a batch of 32 took
# 51 ms at 65,536 rows, 43 ms at 16,384 (one query: 9.8 / 9.3 ms).
CHUNK_ROWS = 16_384
BUILD_ROWS = 65_536  # rows generated per step when the index is built


class Index:
    """Unit-length float32 rows; ids are row numbers."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors
        self.built_at = time.time()
        self.built_by = os.getpid()

    @property
    def size(self) -> int:
        return int(self.vectors.shape[0])

    def nearest(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        return self.nearest_many(query[np.newaxis, :], k)[0]

    def nearest_many(self, queries: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """Top-k rows for m queries in one pass over the index: a matrix product per chunk (rows
        x m scores) instead of m matrix-vector products, so m queries cost little more than one.

        Per query it keeps the k best so far; in later chunks only scores above its k-th best are
        candidates (one comparison pass), so the partial sorts shrink from every score to a few."""
        norms = np.linalg.norm(queries, axis=1, keepdims=True)
        queries = (queries / np.where(norms == 0, 1.0, norms)).astype(np.float32)
        m, k = queries.shape[0], min(k, self.size)
        best_ids = np.full((m, k), -1, dtype=np.int64)
        best_scores = np.full((m, k), -np.inf, dtype=np.float32)
        for start in range(0, self.size, CHUNK_ROWS):
            scores = queries @ self.vectors[start:start + CHUNK_ROWS].T  # (m, rows), row-major
            above = scores > best_scores.min(axis=1, keepdims=True)
            for q in np.flatnonzero(above.any(axis=1)):
                found = np.flatnonzero(above[q])
                ids = np.concatenate([best_ids[q], found + start])
                pooled = np.concatenate([best_scores[q], scores[q, found]])
                keep = np.argpartition(pooled, pooled.size - k)[-k:]
                best_ids[q], best_scores[q] = ids[keep], pooled[keep]
        order = np.argsort(-best_scores, axis=1, kind="stable")
        return [[(int(best_ids[q, i]), float(best_scores[q, i])) for i in order[q]]
                for q in range(m)]


def build_index() -> Index:
    megabytes = int(os.environ.get("RPCFLEET_EXAMPLE_CACHE_MB", "256"))
    rows = max(megabytes * 1024 * 1024 // (DIMENSIONS * 4), 1)
    rng = np.random.default_rng(seed=7)  # the same index on every host and every run
    vectors = np.empty((rows, DIMENSIONS), dtype=np.float32)
    for start in range(0, rows, BUILD_ROWS):  # fill in chunks: no second full-size temporary
        block = rng.standard_normal((min(BUILD_ROWS, rows - start), DIMENSIONS), np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        vectors[start:start + block.shape[0]] = block
    return Index(vectors)


pool = Pool("vectors", cache=build_index, time_limit=60)


class NearestQuery(BaseModel):
    vector: list[float] | None = Field(default=None, description=f"{DIMENSIONS} floats")
    vector_of: int | None = Field(default=None, ge=0, description="use this row as the query")
    k: int = Field(default=10, ge=1, le=1000)

    @model_validator(mode="after")
    def one_query(self) -> NearestQuery:
        if (self.vector is None) == (self.vector_of is None):
            raise ValueError("give exactly one of vector or vector_of")
        if self.vector is not None and len(self.vector) != DIMENSIONS:
            raise ValueError(f"vector must have {DIMENSIONS} floats")
        return self


class Lookup(BaseModel):
    id: int = Field(ge=0)


@pool.method
def nearest(params: NearestQuery, cache: Index) -> list[dict[str, float]]:
    """Top-k rows by cosine similarity: a CPU-bound scan of the whole index."""
    if params.vector_of is not None:
        if params.vector_of >= cache.size:
            raise IndexError(f"no vector {params.vector_of}; the index holds {cache.size}")
        query = cache.vectors[params.vector_of]
    else:
        query = np.asarray(params.vector, dtype=np.float32)
    return [{"id": i, "score": round(s, 6)} for i, s in cache.nearest(query, params.k)]


@pool.method(batch=32, batch_wait=0.005)
def nearest_batched(params: list[NearestQuery], cache: Index) -> list[object]:
    """`nearest`, batched (SPEC 1.1): up to 32 concurrent queries share one pass over the index.
    Run the pool with --prefetch 64 (or auto): one batch runs while the next gathers."""
    queries = np.zeros((len(params), DIMENSIONS), dtype=np.float32)  # a failed row stays 0
    answers: list[object] = [None] * len(params)
    for i, query in enumerate(params):
        if query.vector_of is not None:
            if query.vector_of >= cache.size:  # fails this request alone
                answers[i] = IndexError(f"no vector {query.vector_of}; the index holds "
                                        f"{cache.size}")
                continue
            queries[i] = cache.vectors[query.vector_of]
        else:
            queries[i] = np.asarray(query.vector, dtype=np.float32)
    k = max(query.k for query in params)
    found = cache.nearest_many(queries, k)
    for i, query in enumerate(params):
        if answers[i] is None:
            answers[i] = [{"id": j, "score": round(s, 6)} for j, s in found[i][:query.k]]
    return answers


@pool.method
def lookup(params: Lookup, cache: Index) -> dict[str, object]:
    """One vector by id, with where it came from."""
    if params.id >= cache.size:
        raise IndexError(f"no vector {params.id}; the index holds {cache.size}")
    return {"id": params.id, "vector": cache.vectors[params.id].round(6).tolist(),
            "index_built_by": cache.built_by, "served_by": os.getpid()}


@pool.method
def stats(cache: Index) -> dict[str, object]:
    return {"vectors": cache.size, "dimensions": DIMENSIONS,
            "bytes": int(cache.vectors.nbytes), "built_at": cache.built_at}


@pool.method
async def echo(params: dict[str, object]) -> dict[str, object]:
    """The cheapest call: what the throughput benchmark measures (async: no thread hop)."""
    return params


@pool.method(name="reindex", time_limit=600)
async def reindex(params: dict[str, object], job: JobContext) -> dict[str, object]:
    """A long job that reports progress (it only simulates the work)."""
    import asyncio

    steps = int(params.get("steps", 5))  # type: ignore[call-overload]
    for step in range(steps):
        await asyncio.sleep(float(params.get("step_seconds", 0.5)))  # type: ignore[arg-type]
        job.progress((step + 1) / steps, f"step {step + 1} of {steps}")
    return {"steps": steps}
