"""`job`: what a handler may ask about the request it runs (SPEC: Python API of a pool)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

ProgressSink = Callable[[str, float, str], None]


@dataclass
class JobContext:
    """Injected as `job`: id, attempt, deadline (epoch ms or None) and progress reporting."""

    id: str
    method: str
    attempt: int
    deadline: int | None
    worker: str
    _progress: ProgressSink | None = field(default=None, repr=False)
    # The caller's W3C trace context (`traceparent`, `tracestate`) when it sent one: continue the
    # trace with e.g. OpenTelemetry's `TraceContextTextMapPropagator().extract(job.trace)`.
    trace: dict[str, str] = field(default_factory=dict)

    def progress(self, fraction: float, note: str = "") -> None:
        """Report progress (0..1); safe from sync handlers (threads) and async ones alike."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress fraction must be within 0..1, not {fraction}")
        if not isinstance(note, str):  # it goes out as JSON, from a thread or not
            raise TypeError(f"progress note must be a str, not {type(note).__name__}")
        if self._progress is not None:
            self._progress(self.id, float(fraction), note)
