"""`SharedMapping`: a read-only mapping of many small values in one contiguous buffer, so that
consumers forked from the supervisor share it (SPEC 1.2, caches of many small Python objects).

A plain dict of a million small objects is not shared by forked processes for long: reading an
object writes its reference count, so every page a consumer reads becomes its own copy (about
4-5x the memory for four consumers). A SharedMapping holds no Python object per entry. Built once
(in the pool's cache loader, before the fork) from a dict, it keeps:

- one bytes buffer with every key and value encoded (keys as UTF-8 or 8 bytes, values as JSON);
- an offsets table (one `array`): where each entry's key and value start and end;
- an open-addressing hash table (one `array`): from a CRC-32 of the key's encoded bytes to the
  entry (not `hash()`, which is randomised per interpreter for a str: a mapping pickled to disk
  and loaded elsewhere finds its keys).

A read encodes and hashes the key, probes the table, compares the stored key's bytes, and decodes
only the value asked for. Nothing it touches is a Python object of the mapping's own, so the
shared pages stay shared.
"""

from __future__ import annotations

import operator
import struct
import zlib
from array import array
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from protocol import codec

_EMPTY = 0xFFFFFFFF  # a free slot of the hash table
_STR, _INT, _BIG = b"s", b"i", b"b"  # a str; an int within 64 bits; one past them (its digits)
_INT_KEY = struct.Struct("<q")


def _encode_key(key: object) -> bytes:
    """The key's bytes: one encoding per key, so equal keys meet (any Python str, lone
    surrogates included; any int, however large)."""
    if isinstance(key, str):
        return _STR + key.encode("utf-8", "surrogatepass")
    if isinstance(key, int) and not isinstance(key, bool):
        try:
            return _INT + _INT_KEY.pack(key)
        except struct.error:
            return _BIG + str(key).encode()
    raise TypeError(f"SharedMapping keys are str or int, not {type(key).__name__}")


def _decode_key(raw: bytes) -> str | int:
    tag = raw[:1]
    if tag == _STR:
        return raw[1:].decode("utf-8", "surrogatepass")
    if tag == _BIG:
        return int(raw[1:])
    return int(_INT_KEY.unpack(raw[1:])[0])


def _lookup_key(key: object) -> object:
    """What a dict would take `key` for: `True` is 1, a numpy integer its int."""
    if isinstance(key, str) or type(key) is int:
        return key
    try:
        return operator.index(key)  # type: ignore[arg-type]
    except TypeError:
        return key


class SharedMapping(Mapping[str | int, Any]):
    """A read-only `Mapping` built from `data` (str or int keys, JSON-like values: dict, list,
    str, int, float, bool, None). Every value must come back equal to what was put in, or the
    build raises TypeError naming the key (a tuple would come back a list, say). `m[k]`,
    `m.get(k)`, `k in m`, `len(m)` and iteration over the keys work as on a dict; a read costs a
    hash, a probe or two and the decoding of that one value (about a microsecond for a small
    one: docs/workers.md)."""

    __slots__ = ("_blob", "_count", "_decode", "_mask", "_offsets", "_table")

    def __init__(self, data: Mapping[Any, Any]) -> None:
        blob = bytearray()
        offsets = array("Q")  # per entry: key start, value start (the next key starts its end)
        hashes = []
        exact = False  # a value holding an integer past 64 bits (codec.read_exactly)
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
            exact = exact or codec.read_exactly(raw_value)
            offsets.append(len(blob))
            blob += raw_key
            offsets.append(len(blob))
            blob += raw_value
            hashes.append(zlib.crc32(raw_key))
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
        # Reads decode with orjson straight from the buffer unless a value needs the exact path
        # (checking each read would copy the value's bytes: ~0.5 us of a 2 us read).
        self._decode = codec.loads if exact else orjson.loads
        self._blob = bytes(blob)
        self._offsets = offsets
        self._table = table
        self._mask = mask
        self._count = count

    def _find(self, key: object) -> int:
        """The entry of `key`, or -1."""
        try:
            raw_key = _encode_key(_lookup_key(key))
        except TypeError:
            return -1
        table, offsets, blob, mask = self._table, self._offsets, self._blob, self._mask
        slot = zlib.crc32(raw_key) & mask
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
        return self._decode(memoryview(self._blob)[offsets[2 * entry + 1]:offsets[2 * entry + 2]])

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
