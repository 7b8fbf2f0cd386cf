"""JSON (de)serialisation shared by every side: orjson, pydantic models included."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel

DecodeError = orjson.JSONDecodeError


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any) -> bytes:
    """Serialise to compact UTF-8 JSON; raises TypeError for what JSON cannot hold."""
    return orjson.dumps(value, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON; raises DecodeError (a ValueError) on bad input."""
    return orjson.loads(data)
