"""OpenTelemetry (RPCFLEET_OTEL_EXPORTER): one trace from the caller's request through the
gateway's span, the publish, the queue wait and the handler, across real processes (spans read
back from the console exporter's JSON lines)."""

from __future__ import annotations

import json
from typing import Any

from tests.support.fleet import StartWorker
from tests.support.gateway import Gateway, StartGateway, wait_for_workers
from tests.support.waiting import wait_for

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def _spans(output: str) -> list[dict[str, Any]]:
    spans = []
    for line in output.splitlines():
        if line.startswith('{"name"'):
            spans.append(json.loads(line))
    return spans


def _by_name(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [span for span in spans if span["name"] == name
             and span["context"]["trace_id"] == "0x" + TRACE_ID]
    assert len(found) == 1, (name, [s["name"] for s in spans])
    return found[0]


def test_a_call_is_one_trace_from_the_caller_to_the_handler(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    worker = start_worker(otel_exporter="console")
    gateway = start_gateway(otel_exporter="console")
    wait_for_workers(gateway, 1)
    with gateway.client() as http:
        answer = http.post("/v1/rpc/trace", json={},
                           headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"})
    assert answer.status_code == 200, answer.text
    names = ("POST /v1/rpc/trace", "publish trace", "queue trace", "run trace")
    wait_for(lambda: {s["name"] for s in _spans(gateway.proc.output() + worker.output())}
             >= set(names), what="the four spans")
    spans = _spans(gateway.proc.output() + worker.output())
    server, publish, queued, ran = (_by_name(spans, name) for name in names)
    assert server["kind"] == "SpanKind.SERVER" and server["parent_id"] == "0x" + CALLER_SPAN
    assert publish["parent_id"] == server["context"]["span_id"]
    assert queued["parent_id"] == ran["parent_id"] == publish["context"]["span_id"]
    assert ran["kind"] == "SpanKind.CONSUMER"
    assert server["resource"]["attributes"]["service.name"] == "rpcfleet-gateway"
    assert ran["resource"]["attributes"]["service.name"] == "rpcfleet-worker basic"
    # The handler sees the run span's context in job.trace, to continue the trace.
    traceparent = answer.json()["result"]["traceparent"]
    assert traceparent == f"00-{TRACE_ID}-{ran['context']['span_id'][2:]}-01"


def test_without_an_exporter_the_callers_context_still_reaches_the_handler(
    gateway: Gateway
) -> None:
    with gateway.client() as http:
        answer = http.post("/v1/rpc/trace", json={},
                           headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"})
    assert answer.json()["result"]["traceparent"] == f"00-{TRACE_ID}-{CALLER_SPAN}-01"
