"""A registered handler: which arguments it takes by name, how its params are validated."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

INJECTABLE = frozenset({"params", "cache", "job"})


class InvalidParams(ValueError):
    """The params do not fit the handler's model."""


class HandlerSignatureError(TypeError):
    """A handler asks for an argument the runtime cannot inject."""


@dataclass(frozen=True)
class Handler:
    name: str
    func: Callable[..., Any]
    wants: frozenset[str]
    params_model: type[BaseModel] | None
    is_async: bool
    time_limit: float | None
    batch: int | None = None  # SPEC 1.1: up to this many requests per call (params: a list)
    batch_wait: float = 0.0  # seconds a batch waits for more after its first request

    @classmethod
    def build(cls, func: Callable[..., Any], name: str, time_limit: float | None,
              batch: int | None = None, batch_wait: float = 0.0) -> Handler:
        signature = inspect.signature(func)
        unknown = set(signature.parameters) - INJECTABLE
        if unknown:
            raise HandlerSignatureError(
                f"handler {name!r} takes {sorted(unknown)}; only params, cache and job are injected"
            )
        if batch is not None:
            if batch < 1 or batch_wait < 0:
                raise HandlerSignatureError(f"handler {name!r}: batch must be >= 1 and "
                                            "batch_wait >= 0")
            if "job" in signature.parameters:
                raise HandlerSignatureError(f"batched handler {name!r} cannot take job: one "
                                            "call serves several requests")
        model: type[BaseModel] | None = None
        if "params" in signature.parameters:
            hints = typing.get_type_hints(func)
            hint = hints.get("params")
            if batch is not None:  # list[Model]: each request's params is one Model
                args = typing.get_args(hint)
                hint = args[0] if typing.get_origin(hint) is list and args else None
            if isinstance(hint, type) and issubclass(hint, BaseModel):
                model = hint
        return cls(
            name=name,
            func=func,
            wants=frozenset(signature.parameters),
            params_model=model,
            is_async=inspect.iscoroutinefunction(func),
            time_limit=time_limit,
            batch=batch,
            batch_wait=batch_wait,
        )

    def parse_params(self, raw: Any) -> Any:
        """Validate params into the handler's model, or check they are a JSON object."""
        if not isinstance(raw, dict):
            raise InvalidParams("params must be a JSON object")
        if self.params_model is None:
            return raw
        try:
            return self.params_model.model_validate(raw)
        except ValidationError as exc:
            details = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'params'}: {err['msg']}"
                for err in exc.errors()
            )
            raise InvalidParams(details) from None

    def arguments(self, params: Any, cache: Any, job: Any) -> dict[str, Any]:
        available = {"params": params, "cache": cache, "job": job}
        return {name: available[name] for name in self.wants}
