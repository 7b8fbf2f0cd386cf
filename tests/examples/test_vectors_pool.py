"""The example pool's methods, unit-tested in-process with `workers.testing` (no broker): what
pool authors are shown to do with their own pools."""

from __future__ import annotations

import numpy as np
import pytest

from examples.vectors import Index, pool
from workers.testing import MethodFailed, PoolTester

DIMENSIONS = 128


@pytest.fixture(scope="module")
def tester() -> PoolTester:
    """A small index instead of the 256 MiB one: each row is its own nearest neighbour."""
    rng = np.random.default_rng(seed=1)
    vectors = rng.standard_normal((500, DIMENSIONS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return PoolTester(pool, cache=Index(vectors))


def test_nearest_finds_the_query_row_first(tester: PoolTester) -> None:
    found = tester.call("nearest", {"vector_of": 42, "k": 3})
    assert found[0]["id"] == 42 and len(found) == 3
    assert found[0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_nearest_many_is_exact_across_chunks(tester: PoolTester,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Later chunks only consider scores above each query's k-th best so far: the answers are
    still exactly the brute-force top k, in order."""
    import examples.vectors

    monkeypatch.setattr(examples.vectors, "CHUNK_ROWS", 64)  # 500 rows: 8 chunks
    index: Index = tester.cache
    queries = np.random.default_rng(seed=2).standard_normal((6, DIMENSIONS)).astype(np.float32)
    found = index.nearest_many(queries, 7)
    scores = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ index.vectors.T
    for q in range(6):
        assert [i for i, _ in found[q]] == list(np.argsort(-scores[q], kind="stable")[:7])
    assert [len(f) for f in index.nearest_many(queries[:2], 10_000)] == [500, 500]  # k > rows


def test_params_are_validated_as_the_gateway_would_answer(tester: PoolTester) -> None:
    with pytest.raises(MethodFailed) as failed:
        tester.call("nearest", {"vector_of": 1, "vector": [0.0] * DIMENSIONS})
    assert failed.value.code == "invalid_params"
    assert "exactly one of vector or vector_of" in failed.value.message


def test_a_handler_error_is_the_requests_worker_error(tester: PoolTester) -> None:
    with pytest.raises(MethodFailed) as failed:
        tester.call("lookup", {"id": 10_000})
    assert failed.value.code == "worker_error" and "no vector 10000" in failed.value.message


def test_the_batched_method_answers_each_request_alone(tester: PoolTester) -> None:
    answers = tester.call_batch("nearest_batched", [
        {"vector_of": 7, "k": 2}, {"vector_of": 99_999}, {"k": 0}, {"vector_of": 8, "k": 2}])
    assert answers[0][0]["id"] == 7
    assert isinstance(answers[1], MethodFailed) and answers[1].code == "worker_error"
    assert isinstance(answers[2], MethodFailed) and answers[2].code == "invalid_params"
    assert answers[3][0]["id"] == 8
    assert answers[0] == tester.call("nearest", {"vector_of": 7, "k": 2})  # same as unbatched


def test_a_job_reports_its_progress(tester: PoolTester) -> None:
    assert tester.call("reindex", {"steps": 2, "step_seconds": 0}) == {"steps": 2}
    assert tester.jobs[-1].progress_seen == [(0.5, "step 1 of 2"), (1.0, "step 2 of 2")]


def test_by_default_the_pools_own_factory_builds_the_cache(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setenv("RPCFLEET_EXAMPLE_CACHE_MB", "1")
    built = PoolTester(pool)
    assert built.call("stats") == {"vectors": built.cache.size, "dimensions": DIMENSIONS,
                                   "bytes": 1024 * 1024, "built_at": built.cache.built_at}
