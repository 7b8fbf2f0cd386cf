"""Find a user's pool from `package.module:attribute`, with the current folder importable."""

from __future__ import annotations

import importlib
import os
import sys

from workers.pool import Pool


class PoolNotFound(LookupError):
    """The target does not name a Pool."""


def reload_pool(target: str) -> Pool:
    """Import the pool's module again (new handler code; the caller keeps its cache)."""
    module_name, _, attribute = target.partition(":")
    module = importlib.reload(sys.modules[module_name])
    pool = getattr(module, attribute, None)
    if not isinstance(pool, Pool):
        raise PoolNotFound(f"{target!r} is {type(pool).__name__}, not a workers.Pool")
    return pool


def module_file(target: str) -> str | None:
    """The source file of the pool's module, for --reload to watch."""
    module = sys.modules.get(target.partition(":")[0])
    return getattr(module, "__file__", None)


def load_pool(target: str, app_dir: str = ".") -> Pool:
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise PoolNotFound(f"expected MODULE:POOL, e.g. examples.vectors:pool, not {target!r}")
    path = os.path.abspath(app_dir)
    if path not in sys.path:
        sys.path.insert(0, path)  # a console script does not put the current folder on the path
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise PoolNotFound(f"cannot import {module_name!r}: {exc}") from exc
    pool = getattr(module, attribute, None)
    if not isinstance(pool, Pool):
        raise PoolNotFound(f"{target!r} is {type(pool).__name__}, not a workers.Pool")
    return pool
