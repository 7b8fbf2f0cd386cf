"""JSON (de)serialisation shared by every side: orjson, pydantic models included."""

from __future__ import annotations

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


def dumps(value: Any) -> bytes:
    """Serialise to compact UTF-8 JSON (numpy arrays and scalars too); raises TypeError for what
    JSON cannot hold.

    orjson's numpy option imports numpy the first time it meets a value it does not know (a
    pydantic model, say): 13 MiB in a gateway that never holds an array. A value can only be a
    numpy array if numpy is imported already, so the option is asked for only then."""
    option = orjson.OPT_SERIALIZE_NUMPY if "numpy" in sys.modules else 0
    return orjson.dumps(value, default=_default, option=option)


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON; raises DecodeError (a ValueError) on bad input."""
    return orjson.loads(data)
