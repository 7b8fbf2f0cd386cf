"""`workers.SharedMapping` (SPEC 1.2): a read-only mapping in one buffer that reads back what was
put in, behaves as a Mapping, refuses at build time what would not come back equal, and reads the
same in a forked process (what a consumer is)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from workers import SharedMapping

DATA: dict[str | int, Any] = {
    "alpha": {"id": 1, "tags": ["x", "y"], "price": 2.5, "live": True, "note": None},
    "beta": [1, 2, [3, {"deep": "é"}]],
    7: "seven",
    -3: 0,
    "": "the empty key",
    "float": 1.0,
    "flag": False,
}


def test_it_reads_back_every_value_equal_and_of_the_same_type() -> None:
    mapping = SharedMapping(DATA)
    for key, value in DATA.items():
        assert mapping[key] == value
        assert type(mapping[key]) is type(value)
    assert mapping["float"] == 1.0 and isinstance(mapping["float"], float)


def test_it_is_a_mapping_as_users_expect() -> None:
    mapping = SharedMapping(DATA)
    assert len(mapping) == len(DATA)
    assert list(mapping) == list(DATA)  # keys in insertion order, int keys stay ints
    assert dict(mapping) == DATA
    assert "alpha" in mapping and 7 in mapping and "7" not in mapping and 8 not in mapping
    assert mapping.get("missing") is None and mapping.get("missing", 5) == 5
    assert [] not in mapping  # an unhashable probe is simply absent
    with pytest.raises(KeyError):
        mapping["missing"]
    assert SharedMapping({}).get("x") is None and len(SharedMapping({})) == 0


def test_many_keys_that_collide_in_the_table_are_all_found() -> None:
    data = {i * 1024: i for i in range(5000)}  # same low bits: long probes
    mapping = SharedMapping(data)
    assert all(mapping[key] == value for key, value in data.items())
    assert 1 not in mapping


@pytest.mark.parametrize(("value", "why"), [
    ((1, 2), "would not come back equal"),  # a tuple comes back a list
    ({"a": {1, 2}}, "would not come back equal"),  # a set comes back a list
    ({1: "int key"}, "Dict key must be str"),
    (b"raw", "not JSON serializable: bytes"),
    (object(), "not JSON serializable"),
])
def test_a_value_that_would_not_come_back_equal_is_refused_at_build_time(
    value: object, why: str
) -> None:
    with pytest.raises(TypeError, match=why) as refused:
        SharedMapping({"key": value})
    assert "'key'" in str(refused.value)


def test_keys_other_than_str_or_int_are_refused() -> None:
    for key in (1.5, ("a",), True):
        with pytest.raises(TypeError, match="keys are str or int"):
            SharedMapping({key: 1})


def test_a_forked_process_reads_it_as_the_builder_does() -> None:
    mapping = SharedMapping({f"k{i}": {"i": i} for i in range(10_000)})
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a consumer: forked after the build, same hash seed
        ok = all(mapping[f"k{i}"] == {"i": i} for i in range(10_000)) and "k-1" not in mapping
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    os.close(read)


def test_any_int_or_str_key_a_dict_holds_is_held_and_found() -> None:
    """Ints past 64 bits, lone surrogates: a dict holds them, so does the mapping. A probe it
    cannot hold (an int past 64 bits into a mapping of str keys) is absent, never an error."""
    data: dict[str | int, Any] = {2**64: "big", -(2**80): "negative", 2**63 - 1: "edge",
                                  "\ud800": "lone surrogate", "k": 2**70}
    mapping = SharedMapping(data)
    assert dict(mapping) == data and list(mapping) == list(data)
    assert mapping[2**64] == "big" and mapping["k"] == 2**70
    others = SharedMapping({"a": 1})
    assert 2**64 not in others and "\udfff" not in others and others.get(2**90) is None


def test_a_probe_a_dict_takes_for_an_int_finds_it() -> None:
    """`True` is 1 and a numpy integer is its int, to a dict and to the mapping alike."""
    import numpy as np

    mapping = SharedMapping({1: "one", 2: "two"})
    assert mapping[True] == "one" and np.int64(2) in mapping and mapping.get(np.int32(1)) == "one"


def test_a_pickled_mapping_finds_its_keys_in_another_interpreter(tmp_path: Any) -> None:
    """A cache built once and pickled to disk, loaded by a later process: str hashes differ
    between interpreters; the table must not depend on them."""
    import pickle
    import subprocess
    import sys

    path = tmp_path / "cache.pickle"
    path.write_bytes(pickle.dumps(SharedMapping({f"key{i}": i for i in range(1000)})))
    probe = ("import pickle, sys; m = pickle.loads(open(sys.argv[1], 'rb').read()); "
             "print(all(m[f'key{i}'] == i for i in range(1000)) and 'nope' not in m)")
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True,
                          text=True, check=True, timeout=60,
                          env={**os.environ, "PYTHONHASHSEED": "random"})
    assert done.stdout.strip() == "True", done.stderr
