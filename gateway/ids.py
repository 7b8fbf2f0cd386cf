"""Job and callback ids: 32 hex digits, the creation time's milliseconds (48 bits) then 80
random bits. Unguessable as before (80 random bits), and they sort by creation time, so a job's
rows sit beside those of the jobs created just before and after it in every index keyed by the
id: new jobs are appended to the indexes' last pages, and purging the oldest jobs touches a few
pages of each index, not one page per job (`bench/store_scale.py`, docs/performance.md)."""

from __future__ import annotations

import os

from protocol import now_ms


def time_ordered_id(at_ms: int | None = None) -> str:
    return f"{(now_ms() if at_ms is None else at_ms) & 0xFFFF_FFFF_FFFF:012x}{os.urandom(10).hex()}"


def could_be_job_id(text: str) -> bool:
    """Whether `text` is a job id's form (32 lowercase hex digits, `time_ordered_id`): anything
    else names no job, and is answered so before the store sees it (PostgreSQL refuses a NUL
    in a text parameter with an error of its own)."""
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)
