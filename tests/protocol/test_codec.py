"""The one JSON codec every side shares (protocol.codec)."""

from __future__ import annotations

import subprocess
import sys

from protocol import codec


def test_models_sets_and_numpy_values_serialise() -> None:
    import numpy as np

    from protocol import SetPrefetch

    value = {"model": SetPrefetch(prefetch=3), "tags": {"a"}, "array": np.arange(3),
             "score": np.float32(0.5)}
    assert codec.loads(codec.dumps(value)) == {
        "model": {"op": "set_prefetch", "prefetch": 3}, "tags": ["a"], "array": [0, 1, 2],
        "score": 0.5}


def test_serialising_never_imports_numpy_into_a_process_without_it() -> None:
    """A gateway never holds an array; numpy would cost it 13 MiB of RSS."""
    probe = ("import sys; from protocol import codec, Replayed\n"
             "codec.dumps({'command': Replayed(), 'ids': {1, 2}})\n"
             "print('numpy' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == "False"


def test_integers_past_64_bits_round_trip_exactly_wherever_they_are() -> None:
    import dataclasses

    from pydantic import BaseModel

    @dataclasses.dataclass
    class Point:
        x: int

    class Total(BaseModel):
        cents: int

    edges = [2**64 - 1, -(2**63), 2**64, -(2**63) - 1]
    value = {"big": 2**70, "negative": -(2**80), "edges": edges,
             "in": ({"tuple": 10**40},), "point": Point(2**90), "model": Total(cents=3**60),
             "set": {2**100}, "long_fraction": 0.000123456789012345678, "plain": 7}
    back = codec.loads(codec.dumps(value))
    assert back == {"big": 2**70, "negative": -(2**80), "edges": edges, "in": [{"tuple": 10**40}],
                    "point": {"x": 2**90}, "model": {"cents": 3**60}, "set": [2**100],
                    "long_fraction": 0.000123456789012345678, "plain": 7}
    assert all(type(n) is int for n in back["edges"])
    assert codec.loads(memoryview(codec.dumps([2**65]))) == [2**65]
    # Each alone (a text holding one must take the exact path by itself): a negative one
    # past 64 bits has only 19 digits.
    for edge in (-(2**63) - 1, -(10**19) + 1, 2**64, -(2**63), 2**64 - 1):
        back = codec.loads(codec.dumps({"n": edge}))["n"]
        assert back == edge and type(back) is int, edge
    assert codec.loads(codec.dumps([2**65]).decode()) == [2**65]


def test_a_text_read_exactly_is_refused_for_what_any_other_text_is() -> None:
    """The exact path (a run of 20 digits) keeps orjson's strictness: no NaN, no infinity."""
    for bad in (b'{"a": NaN, "b": 123456789012345678901}', b'[1e400, 123456789012345678901]',
                b'[123456789012345678901', b'["\xff", 123456789012345678901]'):
        try:
            codec.loads(bad)
        except codec.DecodeError:
            continue
        raise AssertionError(f"{bad!r} was read")


def test_other_unserialisable_values_are_still_refused() -> None:
    try:
        codec.dumps({"n": 2**70, "raw": b"bytes"})
    except TypeError as exc:
        assert "bytes" in str(exc)
    else:
        raise AssertionError("bytes were serialised")


def test_a_value_nested_too_deep_is_refused_as_any_unserialisable_value() -> None:
    """A long integer met first sends the value down the exact path, whose walk meets the deep
    branch: a TypeError as orjson's own depth limit gives, never a RecursionError (a 500)."""
    deep: object = 1
    for _ in range(3000):
        deep = [deep]
    try:
        codec.dumps({"first": 2**70, "then": deep})
    except TypeError:
        return
    raise AssertionError("serialised")
