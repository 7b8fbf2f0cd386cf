"""OpenTelemetry spans, optional (the `otel` extra): one trace from the HTTP request through the
publish and the queue wait to the handler. The W3C trace context travels in the request's
headers (`traceparent`, `tracestate`), as it always did; with tracing on, each hop adds its span.

Off unless `RPCFLEET_OTEL_EXPORTER` is set (`otlp`: the OTLP/HTTP exporter, configured by the
standard `OTEL_EXPORTER_OTLP_*` variables; `console`: spans as JSON on stdout, for trying it out).
Off, every helper here is a plain pass-through. A consumer configures its own provider after the
fork (an exporter's thread does not survive one); a gateway process in its lifespan.

Spans: `POST /v1/rpc/{method}` or `POST /v1/jobs/{method}` (server) > `publish {method}`
(producer); in the worker, under the producer: `queue {method}` (from the publish to the start,
timed by the request's `x-rpcfleet-sent-at` header) and `run {method}` (consumer), the handler.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from protocol import names

log = logging.getLogger("rpcfleet.tracing")

Exporter = Literal["otlp", "console"]
SENT_AT = names.HEADER_SENT_AT


class Tracing:
    """This process's tracer, or nothing (tracing off, or the extra missing)."""

    def __init__(self) -> None:
        self._tracer: Any = None
        self._provider: Any = None

    def configure(self, service: str, exporter: Exporter | None) -> None:
        """Set up this process's provider (after a fork, in the child)."""
        if exporter is None:
            return
        try:
            from opentelemetry import trace
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
            from opentelemetry.sdk.trace.export import (
                BatchSpanProcessor,
                ConsoleSpanExporter,
                SimpleSpanProcessor,
            )
        except ImportError:
            log.warning("RPCFLEET_OTEL_EXPORTER is set but OpenTelemetry is not installed: "
                        "pip install 'rpcfleet[otel]'; tracing stays off")
            return
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        processor: SpanProcessor
        if exporter == "console":  # at once, one JSON object per span
            processor = SimpleSpanProcessor(ConsoleSpanExporter(
                formatter=lambda span: span.to_json(indent=None) + "\n"))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            processor = BatchSpanProcessor(OTLPSpanExporter())
        provider.add_span_processor(processor)
        self._provider = provider
        self._tracer = trace.get_tracer("rpcfleet", tracer_provider=provider)

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()

    @contextmanager
    def publishing(self, route: str, method: str, incoming: dict[str, str] | None,
                   sent_at_ms: int) -> Iterator[dict[str, str] | None]:
        """Around a gateway's request and its publish: yields the headers the request carries
        (the caller's trace context when off; the publish span's, and the send time, when on)."""
        if self._tracer is None:
            yield incoming
            return
        from opentelemetry import propagate, trace

        parent = propagate.extract(incoming or {})
        with self._tracer.start_as_current_span(
                f"{route}", context=parent, kind=trace.SpanKind.SERVER,
                attributes={"rpcfleet.method": method}), \
                self._tracer.start_as_current_span(
                    f"publish {method}", kind=trace.SpanKind.PRODUCER,
                    attributes={"messaging.system": "rabbitmq",
                                "messaging.destination.name": method}):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            carrier[SENT_AT] = str(sent_at_ms)
            yield carrier

    @contextmanager
    def running(self, method: str, job_id: str, headers: dict[str, Any] | None,
                started_ms: int) -> Iterator[dict[str, str] | None]:
        """Around a handler in a consumer: the queue wait and the run, under the publish span.
        Yields the trace context for the handler's `job.trace` (its run span's, when on)."""
        found = headers or {}
        incoming: dict[str, str] = {name: str(found[name]) for name in names.TRACE_HEADERS
                                    if name in found}
        if self._tracer is None:
            yield incoming
            return
        from opentelemetry import propagate, trace

        parent = propagate.extract(incoming)
        sent = found.get(SENT_AT)
        if sent is not None:
            waited = self._tracer.start_span(
                f"queue {method}", context=parent, kind=trace.SpanKind.CONSUMER,
                start_time=int(sent) * 1_000_000, attributes={"messaging.message.id": job_id})
            waited.end(end_time=started_ms * 1_000_000)
        with self._tracer.start_as_current_span(
                f"run {method}", context=parent, kind=trace.SpanKind.CONSUMER,
                attributes={"messaging.message.id": job_id, "rpcfleet.method": method}):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            yield carrier
