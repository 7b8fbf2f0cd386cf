"""The fault suite's figures, one row per scenario (tests/faults: the slow-marked scenarios).

    ./run bench faults [pytest args, e.g. -k sigkill]

Runs `pytest -m slow tests/faults` with each scenario appending its accounting to a file, then
prints the table: accepted, lost, duplicated effects, re-executions, indeterminate (recovered),
definite failures, wrong answers, hung (answered past the deadline + 1 s), p50/p99 latency,
and the scenario's own note (time to recover).
The suite's assertions still hold (lost = 0, duplicated = 0, ...): a failing scenario is listed
with what it reported before failing, and the exit code is pytest's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ("accepted", "lost", "duplicated", "reexecutions", "indeterminate", "recovered",
           "definite_failures", "wrong_answers", "hung", "p50_ms", "p99_ms")


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        rows_file = Path(folder) / "faults.jsonl"
        env = {**os.environ, "FAULTS_REPORT_FILE": str(rows_file)}
        done = subprocess.run([sys.executable, "-m", "pytest", "-m", "slow", "tests/faults",
                               "-q", "-p", "no:cacheprovider", *sys.argv[1:]], cwd=REPO, env=env)
        rows = ([json.loads(line) for line in rows_file.read_text().splitlines()]
                if rows_file.exists() else [])
    print()
    print("| scenario | " + " | ".join(COLUMNS) + " | note |")
    print("|---|" + "---|" * len(COLUMNS) + "---|")
    for row in rows:
        cells = [f"{row[c]:.0f}" if isinstance(row[c], float) else str(row[c]) for c in COLUMNS]
        print(f"| {row['scenario']} | " + " | ".join(cells) + f" | {row['note']} |")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
