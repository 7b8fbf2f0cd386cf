"""JSON (de)serialisation shared by every side: orjson, pydantic models included."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

import orjson
from pydantic import BaseModel

DecodeError = orjson.JSONDecodeError

# The one rule for what a result (and a CallError's details) may hold, said where it is refused.
JSON_RULE = ("a result is JSON: dict (str keys), list, tuple, str, int, float, bool, None; "
             "pydantic models, dataclasses, enums, datetime/date/time (ISO 8601), UUID, sets "
             "(as lists) and numpy arrays are converted; anything else is refused (bytes: "
             "encode them, base64 or text)")


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# orjson carries integers within 64 bits (-2**63 .. 2**64-1); JSON and Python have no limit. One
# past them has 20 digits or more, or is negative with 19 (-2**63-1 is -9223372036854775809): a
# text holding neither run is read by orjson alone, one that does (a long integer, or a float's
# long fraction) by the standard library, exactly.
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_DIGIT_RUN = b"0" * 20
_LONG_NEGATIVE_RUN = b"-" + b"0" * 19
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def dumps(value: Any) -> bytes:
    """Serialise to compact UTF-8 JSON (numpy arrays and scalars too); raises TypeError for what
    JSON cannot hold.

    orjson's numpy option imports numpy the first time it meets a value it does not know (a
    pydantic model, say): 13 MiB in a gateway that never holds an array. A value can only be a
    numpy array if numpy is imported already, so the option is asked for only then."""
    option = orjson.OPT_SERIALIZE_NUMPY if "numpy" in sys.modules else 0
    try:
        return orjson.dumps(value, default=_default, option=option)
    except orjson.JSONEncodeError as exc:
        if "64-bit" not in str(exc):
            raise
    try:
        holding_text = _long_ints_as_text(value)
    except RecursionError:  # orjson's own limit is about as deep
        raise TypeError("the value is nested too deep to serialise") from None
    return orjson.dumps(holding_text, default=_default, option=option)


def read_exactly(raw: bytes) -> bool:
    """Whether a JSON text may hold an integer past 64 bits (a run of 20 digits): read by the
    standard library then, orjson otherwise (`loads`)."""
    if len(raw) < len(_LONG_NEGATIVE_RUN):
        return False
    digits = raw.translate(_DIGITS_AS_ZERO)
    return _LONG_DIGIT_RUN in digits or _LONG_NEGATIVE_RUN in digits


def _long_ints_as_text(value: Any) -> Any:
    """`value` with its integers past 64 bits as the JSON text of their digits (the cold path
    of a value holding one)."""
    if type(value) is int:
        return value if _INT_MIN <= value <= _INT_MAX else orjson.Fragment(str(value))
    if isinstance(value, dict):
        return {key: _long_ints_as_text(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_long_ints_as_text(item) for item in value]
    if isinstance(value, BaseModel):
        return _long_ints_as_text(value.model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _long_ints_as_text(dataclasses.asdict(value))
    return value


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON; raises DecodeError (a ValueError) on bad input. Integers of any size come
    back exact (orjson alone would read one past 64 bits as the float nearest it)."""
    raw = data if type(data) is bytes else data.encode() if isinstance(data, str) else bytes(data)
    if not read_exactly(raw):
        return orjson.loads(raw)
    orjson.loads(data)  # the same errors as every other text (NaN, bad UTF-8, depth...)
    try:
        return json.loads(raw)
    except RecursionError:
        raise DecodeError("the JSON text is nested too deep", "", 0) from None
