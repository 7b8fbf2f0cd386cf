"""The fault suite's pool: every execution is recorded, and each job's effect is committed once
under its id, so the suite can count lost, duplicated and re-executed work."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from workers import JobContext, Pool

pool = Pool("ledger", cache=lambda: {"loaded_by": os.getpid()})


def _ledger() -> Path:
    return Path(os.environ["RPCFLEET_TEST_LEDGER"])


@pool.method
def effect(params: dict[str, object], job: JobContext) -> dict[str, object]:
    """Runs for `ms` milliseconds, then commits its effect under the job id (idempotently: the
    first commit wins) and answers with what it committed."""
    ledger = _ledger()
    with open(ledger / "runs", "a") as runs:
        runs.write(f"{job.id} {job.attempt} {os.getpid()}\n")
    seconds = float(params.get("ms", 50)) / 1000  # type: ignore[arg-type]
    if params.get("cpu"):  # pure-Python work holding the GIL between switches, not a sleep
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            sum(range(1000))
    else:
        time.sleep(seconds)
    committed = ledger / "effects" / job.id
    # Written aside, then linked into place: the link is atomic and fails if the effect exists,
    # so a run killed mid-write never leaves an empty effect for the next run to read back.
    draft = ledger / "effects" / f".draft-{job.id}-{os.getpid()}"
    draft.write_text(str(params.get("value")))
    try:
        os.link(draft, committed)
    except FileExistsError:
        pass  # a re-execution: the effect stands as first committed
    finally:
        draft.unlink()
    return {"value": committed.read_text(), "pid": os.getpid()}


@pool.method
def poison(params: dict[str, object]) -> None:
    """Bad input that crashes whoever runs it, every time."""
    os.kill(os.getpid(), signal.SIGKILL)
