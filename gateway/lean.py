"""What a gateway process leaves unloaded or unbuilt, for its memory (one process per core, each
its own copy of everything imported).

- FastAPI, for every route it builds (at a router's decorator, again at `include_router`), asks
  whether the route's models are pydantic v1 models by importing `pydantic.v1`: 23 modules,
  1.5 MiB a process, loaded only to refuse v1 models. The gateway's models are all pydantic 2,
  so while its routes are built that import is answered as on a pydantic without v1 (FastAPI's
  answer then: not a v1 model). Nothing is changed after: a later `import pydantic.v1` in the
  same process works as usual.
- FastAPI's OpenAPI models (`fastapi.openapi.models`, 36 pydantic models) are built when FastAPI
  is imported, each into a validator and a serializer holding every model it nests: 1.25 MiB a
  process, used only to serve /openapi.json (and for a few security schemes' descriptions). A
  gateway process imports FastAPI with pydantic's `defer_build` on, so 32 of them (FastAPI
  rebuilds or instantiates 4 during its own import) and 5 other models FastAPI defines (the
  `fastapi.security` credentials, `ServerSentEvent`, two internal ones) are built at their first
  use (the first /openapi.json: 3.6 ms, 0.1 MiB). `import_web_framework` does it; `rpcfleet
  gateway` calls it first in each of its processes.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import BaseModel

PYDANTIC_V1 = "pydantic.v1"
WEB_FRAMEWORK = "fastapi"


@contextmanager
def without_pydantic_v1() -> Iterator[None]:
    """Build routes without loading `pydantic.v1` (left as it is if something loaded it)."""
    if PYDANTIC_V1 in sys.modules:
        yield
        return
    sys.modules[PYDANTIC_V1] = None  # type: ignore[assignment]  # "import refused", by Python's rule
    try:
        yield
    finally:
        if sys.modules.get(PYDANTIC_V1, "") is None:
            del sys.modules[PYDANTIC_V1]


@contextmanager
def models_built_at_first_use() -> Iterator[None]:
    """pydantic models defined meanwhile build their validator and serializer at their first
    use, not at class creation (each class keeps `defer_build` in its own config; models
    defined after are as usual). Every model's config starts from `BaseModel.model_config`,
    so that is where the setting is lent for the duration."""
    config = BaseModel.model_config
    if "defer_build" in config:  # set by someone else: theirs to keep
        yield
        return
    config["defer_build"] = True
    try:
        yield
    finally:
        del config["defer_build"]


def import_web_framework() -> None:
    """Import FastAPI with its OpenAPI models built at their first use (nothing if it is
    already imported: its models exist then)."""
    if WEB_FRAMEWORK in sys.modules:
        return
    with models_built_at_first_use():
        importlib.import_module(WEB_FRAMEWORK)
