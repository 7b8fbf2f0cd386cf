"""`Pool`: what a user writes — a named set of methods over one cache loaded once per host."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any, TypeVar, overload

from protocol import MethodDoc, names
from workers.handlers import Handler

F = TypeVar("F", bound=Callable[..., Any])


class Pool:
    """A pool of consumer processes serving `methods` over a cache built by `cache()`.

    `cache` runs ONCE per host in the supervisor, before it forks the consumers, which then share
    the cache's pages copy-on-write. Keep large data in buffers (numpy arrays, bytes, mmap): many
    small Python objects get copied page by page as reference counts change.
    """

    def __init__(
        self,
        name: str,
        cache: Callable[[], Any] | None = None,
        *,
        time_limit: float | None = None,
    ) -> None:
        if not name or any(ch in name for ch in ".#* :/"):
            raise ValueError(f"pool name {name!r} must be non-empty without . # * : / or spaces")
        self.name = name
        self.cache_factory = cache
        self.time_limit = time_limit  # default hard limit of its methods (seconds)
        self.handlers: dict[str, Handler] = {}
        self._docs: dict[str, MethodDoc] | None = None

    @overload
    def method(self, func: F) -> F: ...

    @overload
    def method(
        self, func: None = None, *, name: str | None = None, time_limit: float | None = None,
        batch: int | None = None, batch_wait: float = 0.005,
    ) -> Callable[[F], F]: ...

    def method(
        self,
        func: F | None = None,
        *,
        name: str | None = None,
        time_limit: float | None = None,
        batch: int | None = None,
        batch_wait: float = 0.005,
    ) -> F | Callable[[F], F]:
        """Register a handler; its method name is the function's name unless `name` is given.

        `batch=N` (SPEC 1.1): the handler takes a list of params and returns a list of results,
        one per request, serving up to N requests per call; a batch waits at most `batch_wait`
        seconds (default 5 ms) after its first request. Run such pools with a prefetch of at
        least N (or `auto`): a batch never holds more deliveries than the prefetch."""

        def register(f: F) -> F:
            method_name = name or f.__name__
            if not names.valid_method_name(method_name):
                raise ValueError(f"method name {method_name!r} is not valid: at most "
                                 f"{names.METHOD_NAME_MAX} ASCII letters, digits, '_', '-', '.'")
            if method_name in self.handlers:
                raise ValueError(f"method {method_name!r} is registered twice in pool {self.name}")
            limit = time_limit if time_limit is not None else self.time_limit
            self.handlers[method_name] = Handler.build(f, method_name, limit, batch,
                                                       batch_wait if batch else 0.0)
            return f

        return register(func) if func is not None else register

    @property
    def methods(self) -> list[str]:
        return sorted(self.handlers)

    def docs(self) -> dict[str, MethodDoc]:
        """Per method, what the gateway's API docs show (computed once)."""
        if self._docs is None:
            from workers.docs import method_doc

            self._docs = {name: method_doc(self.name, self.handlers[name])
                          for name in self.methods}
        return self._docs

    def load_cache(self) -> Any:
        """The cache, from the pool's loader; `CacheLoadFailed` (one line: what and where)
        when the loader raises."""
        if self.cache_factory is None:
            return None
        try:
            return self.cache_factory()
        except Exception as exc:
            raise CacheLoadFailed(self.name, exc) from exc


class CacheLoadFailed(Exception):
    """A pool's cache loader raised: says so in one line, with the loader's innermost frame
    (the traceback stays on `__cause__`, logged at DEBUG)."""

    def __init__(self, pool: str, error: Exception) -> None:
        frames = traceback.extract_tb(error.__traceback__)
        where = f" at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" \
            if frames else ""
        super().__init__(f"the cache loader of pool {pool!r} failed{where}: "
                         f"{type(error).__name__}: {error}")
