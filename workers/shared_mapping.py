"""`SharedMapping`: a read-only mapping of many small values in one contiguous buffer, so that
consumers forked from the supervisor share it (SPEC 1.2, caches of many small Python objects).

A plain dict of a million small objects is not shared by forked processes for long: reading an
object writes its reference count, so every page a consumer reads becomes its own copy (about
4-5x the memory for four consumers). A SharedMapping holds no Python object per entry. Built once
(in the pool's cache loader, before the fork) from a dict, it keeps:

- one bytes buffer with every key and value encoded (keys as UTF-8 or 8 bytes, values as JSON);
- an offsets table (one `array`): where each entry's key and value start and end;
- an open-addressing hash table (one `array`): from `hash(key)` to the entry.

A read hashes the key, probes the table, compares the stored key's bytes, and decodes only the
value asked for. Nothing it touches is a Python object of the mapping's own, so the shared pages
stay shared. `hash()` of a str is randomised per interpreter, but forked consumers share their
supervisor's, which built the table; a mapping is not meant to be pickled to another process.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterator, Mapping
from typing import Any

from protocol import codec

_EMPTY = 0xFFFFFFFF  # a free slot of the hash table
_STR, _INT = b"s", b"i"
_INT_KEY = struct.Struct("<q")


def _encode_key(key: object) -> bytes:
    if isinstance(key, str):
        return _STR + key.encode()
    if isinstance(key, int) and not isinstance(key, bool):
        return _INT + _INT_KEY.pack(key)
    raise TypeError(f"SharedMapping keys are str or int, not {type(key).__name__}")


def _decode_key(raw: bytes) -> str | int:
    if raw[:1] == _STR:
        return raw[1:].decode()
    return int(_INT_KEY.unpack(raw[1:])[0])


class SharedMapping(Mapping[str | int, Any]):
    """A read-only `Mapping` built from `data` (str or int keys, JSON-like values: dict, list,
    str, int, float, bool, None). Every value must come back equal to what was put in, or the
    build raises TypeError naming the key (a tuple would come back a list, say). `m[k]`,
    `m.get(k)`, `k in m`, `len(m)` and iteration over the keys work as on a dict; a read costs a
    hash, a probe or two and the decoding of that one value (about a microsecond for a small
    one: docs/workers.md)."""

    __slots__ = ("_blob", "_count", "_mask", "_offsets", "_table")

    def __init__(self, data: Mapping[Any, Any]) -> None:
        blob = bytearray()
        offsets = array("Q")  # per entry: key start, value start (the next key starts its end)
        hashes = []
        for key, value in data.items():
            raw_key = _encode_key(key)
            try:
                raw_value = codec.dumps(value)
            except TypeError as exc:
                raise TypeError(f"SharedMapping value of {key!r}: {exc}") from None
            if codec.loads(raw_value) != value or not _same_shape(codec.loads(raw_value), value):
                raise TypeError(f"SharedMapping value of {key!r} would not come back equal "
                                f"(a {type(value).__name__} holding types JSON changes: tuples, "
                                f"sets, non-str keys...)")
            offsets.append(len(blob))
            blob += raw_key
            offsets.append(len(blob))
            blob += raw_value
            hashes.append(hash(key))
        offsets.append(len(blob))
        count = len(hashes)
        size = 8
        while size < count * 2:  # at most half full: short probes
            size *= 2
        table = array("I", [_EMPTY]) * size
        mask = size - 1
        for entry, hashed in enumerate(hashes):
            slot = hashed & mask
            while table[slot] != _EMPTY:
                slot = (slot + 1) & mask
            table[slot] = entry
        self._blob = bytes(blob)
        self._offsets = offsets
        self._table = table
        self._mask = mask
        self._count = count

    def _find(self, key: object) -> int:
        """The entry of `key`, or -1."""
        try:
            raw_key = _encode_key(key)
        except TypeError:
            return -1
        table, offsets, blob, mask = self._table, self._offsets, self._blob, self._mask
        slot = hash(key) & mask
        while True:
            entry = table[slot]
            if entry == _EMPTY:
                return -1
            start, end = offsets[2 * entry], offsets[2 * entry + 1]
            if end - start == len(raw_key) and blob[start:end] == raw_key:
                return entry
            slot = (slot + 1) & mask

    def __getitem__(self, key: str | int) -> Any:
        entry = self._find(key)
        if entry < 0:
            raise KeyError(key)
        offsets = self._offsets
        return codec.loads(memoryview(self._blob)[offsets[2 * entry + 1]:offsets[2 * entry + 2]])

    def __contains__(self, key: object) -> bool:
        return self._find(key) >= 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str | int]:
        offsets, blob = self._offsets, self._blob
        for entry in range(self._count):
            yield _decode_key(blob[offsets[2 * entry]:offsets[2 * entry + 1]])

    @property
    def nbytes(self) -> int:
        """The memory it holds: the buffer and its two tables."""
        return (len(self._blob) + self._offsets.itemsize * len(self._offsets)
                + self._table.itemsize * len(self._table))

    def __repr__(self) -> str:
        return f"<SharedMapping of {self._count} entries, {self.nbytes} bytes>"


def _same_shape(decoded: Any, value: Any) -> bool:
    """Equal is not enough: 1 == 1.0 == True, yet a caller reading back a float for a bool would
    be surprised. The types must match all the way down (JSON's own types)."""
    if type(decoded) is not type(value):
        return False
    if isinstance(value, dict):
        return all(_same_shape(decoded[k], v) for k, v in value.items())
    if isinstance(value, list):
        return all(_same_shape(d, v) for d, v in zip(decoded, value, strict=True))
    return True
