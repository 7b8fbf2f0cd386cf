"""Find a user's pool from `package.module:attribute`, with the current folder importable."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from types import ModuleType

from workers.handlers import HandlerSignatureError
from workers.pool import Pool


class PoolNotFound(LookupError):
    """The target does not name a Pool."""


def reload_pool(target: str) -> Pool:
    """Import the pool's module again (new handler code; the caller keeps its cache)."""
    module_name, _, attribute = target.partition(":")
    return _pool_in(importlib.reload(sys.modules[module_name]), target, attribute)


def _pool_in(module: ModuleType, target: str, attribute: str) -> Pool:
    """The Pool `module.attribute`, or PoolNotFound saying what the module has instead."""
    pools = sorted(name for name, value in vars(module).items() if isinstance(value, Pool))
    has = (f"it has {', '.join(repr(name) for name in pools)}" if pools
           else "it defines no workers.Pool")
    if not hasattr(module, attribute):
        raise PoolNotFound(f"module {module.__name__!r} has no attribute {attribute!r}; {has}")
    pool = getattr(module, attribute)
    if not isinstance(pool, Pool):
        raise PoolNotFound(f"{target!r} is a {type(pool).__name__}, not a workers.Pool; {has}")
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
        if exc.name is not None and module_name.split(".")[0] == exc.name.split(".")[0]:
            raise PoolNotFound(
                f"cannot import {module_name!r}: no {exc.name!r} in {path} (the folder "
                f"--app-dir names; default: the current one). Point --app-dir at the folder "
                f"that holds {module_name.split('.')[0]!r}") from exc
        raise PoolNotFound(f"cannot import {module_name!r}: {exc} (a module it imports is "
                           f"missing: install it in this environment)") from exc
    except HandlerSignatureError as exc:  # a method the pool cannot call as written
        raise PoolNotFound(f"{module_name!r} defines a method rpcfleet cannot call: {exc}") \
            from exc
    except Exception as exc:  # the module's own code failed while it was imported
        where = _raised_at(exc)
        raise PoolNotFound(f"importing {module_name!r} raised {type(exc).__name__}: {exc}"
                           f"{f' ({where})' if where else ''}") from exc
    return _pool_in(module, target, attribute)


def _raised_at(exc: BaseException) -> str:
    """Where in the user's code an exception was raised: `file:line` of its last frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""
