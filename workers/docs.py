"""What a pool tells the gateway's API docs about its methods: summary and description from the
docstring, params and result as JSON Schema from the type hints (a pydantic model, or any type
pydantic can describe), announced in the consumers' beats."""

from __future__ import annotations

import inspect
import typing
from typing import Any

from pydantic import BaseModel, TypeAdapter

from protocol import MethodDoc
from workers.handlers import Handler

ANY_OBJECT: dict[str, Any] = {"type": "object"}


def _item(hint: Any) -> Any:
    args = typing.get_args(hint)
    return args[0] if typing.get_origin(hint) is list and args else None


def method_doc(pool: str, handler: Handler) -> MethodDoc:
    summary, description = _docstring(handler.func)
    hints = _hints(handler.func)
    params = ANY_OBJECT
    defs: dict[str, dict[str, Any]] = {}
    params_hint, result_hint = hints.get("params"), hints.get("return")
    if handler.batch:  # one request's params and result: an item of the lists it takes
        params_hint, result_hint = _item(params_hint), _item(result_hint)
    if "params" in handler.wants:
        params = _schema(pool, params_hint, defs) or ANY_OBJECT
    result = _schema(pool, result_hint, defs) if result_hint is not None else None
    return MethodDoc(summary=summary, description=description, params=params, result=result,
                     defs=defs, time_limit=handler.time_limit)


def _schema(pool: str, hint: Any, defs: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """JSON Schema of a hint with its nested definitions moved to `defs` as `{pool}.{Model}`;
    None for what pydantic cannot describe (e.g. a numpy array)."""
    if hint is None:
        return None
    template = f"#/components/schemas/{pool}.{{model}}"
    try:
        if isinstance(hint, type) and issubclass(hint, BaseModel):
            schema = hint.model_json_schema(ref_template=template)
        else:
            schema = TypeAdapter(hint).json_schema(ref_template=template)
    except Exception:  # a type without a schema documents as "anything"
        return None
    for name, definition in schema.pop("$defs", {}).items():
        defs[f"{pool}.{name}"] = definition
    return schema


def _hints(func: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func)
    except Exception:  # unresolvable forward references: no schemas, still documented
        return {}


def _docstring(func: Any) -> tuple[str | None, str | None]:
    text = inspect.getdoc(func)
    if not text:
        return None, None
    first, _, rest = text.partition("\n")
    return first.strip(), rest.strip() or None
