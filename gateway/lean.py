"""What a gateway process leaves unloaded, for its memory (one process per core, each its own
copy of everything imported).

FastAPI, for every route it builds (at a router's decorator, again at `include_router`), asks
whether the route's models are pydantic v1 models by importing `pydantic.v1`: 23 modules,
1.5 MiB a process, loaded only to refuse v1 models. The gateway's models are all pydantic 2,
so while its routes are built that import is answered as on a pydantic without v1 (FastAPI's
answer then: not a v1 model). Nothing is changed after: a later `import pydantic.v1` in the same
process works as usual.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

PYDANTIC_V1 = "pydantic.v1"


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
