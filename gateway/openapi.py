"""The API docs (/docs, /openapi.json): the routes, plus one operation per method the fleet has
announced, with the params and result schemas its workers derived from their type hints, so each
method reads like a plain endpoint. Rebuilt on each request of the document: workers come and go.

`POST /v1/rpc/{method}` and `POST /v1/jobs/{method}` have no FastAPI route: `gateway.fastpath`
serves them in front of the framework (one implementation each), and their generic operations
are described here as data."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from gateway.fastpath import CALL, FAST_ROUTES, IDEMPOTENCY_KEY_MAX, SUBMIT, FastRoute
from gateway.fleet.view import FleetView
from protocol import JobSubmission, MethodDoc

CALL_PATH = CALL.template
JOB_PATH = SUBMIT.template
TIMEOUT_HELP = "seconds to wait for the reply; default and maximum come from the settings"
METHOD_PARAMETER = {"name": "method", "in": "path", "required": True,
                    "schema": {"type": "string", "title": "Method"}}
CALL_OPERATION: dict[str, Any] = {
    "tags": ["calls"],
    "summary": "Call a method and wait for its result",
    "operationId": "call_v1_rpc__method__post",
    "parameters": [
        METHOD_PARAMETER,
        {"name": "timeout", "in": "query", "required": False, "description": TIMEOUT_HELP,
         "schema": {"type": "number", "exclusiveMinimum": 0, "title": "Timeout"}},
    ],
    # The body is documented, not parsed: its bytes go to the worker as they came.
    "requestBody": {"required": True, "content": {"application/json": {
        "schema": {"type": "object", "description": "the method's params"},
        "example": {"vector_of": 42, "k": 3}}}},
    "responses": {
        "200": {"description": "The method's result", "content": {"application/json": {
            "schema": {}, "example": {"id": "5f0c3d…", "result": [{"id": 42, "score": 1.0}]}}}},
        "404": {"description": "unknown_method / not_found"},
        "422": {"description": "invalid_params"},
        "500": {"description": "worker_error / time_limit / result_too_large"},
        "503": {"description": "overloaded / no_workers (with Retry-After)"},
        "504": {"description": "deadline_exceeded"},
    },
}


JOB_EXAMPLE = {"params": {"steps": 5}, "callback_url": "https://example.com/hooks/rpcfleet",
               "priority": 5, "timeout": 600}
JOB_OPERATION: dict[str, Any] = {
    "tags": ["jobs"],
    "summary": "Submit a job: 202 with the job now, the result later (poll, stream or callback)",
    "operationId": "submit_v1_jobs__method__post",
    "parameters": [
        METHOD_PARAMETER,
        {"name": "idempotency-key", "in": "header", "required": False,
         "description": "the same key and body again return the same job",
         "schema": {"type": "string", "maxLength": IDEMPOTENCY_KEY_MAX,
                    "title": "Idempotency-Key"}},
        {"name": "prefer", "in": "header", "required": False, "description": "wait=N (RFC 7240)",
         "schema": {"type": "string", "title": "Prefer"}},
    ],
    "requestBody": {"required": True, "content": {"application/json": {
        "schema": JobSubmission.model_json_schema(), "example": JOB_EXAMPLE}}},
    "responses": {
        "202": {"description": "accepted; Location points at the job",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
        "200": {"description": "finished within Prefer: wait=N",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
        "400": {"description": "bad_request (a body that is not a submission, a refused "
                               "callback_url, an Idempotency-Key reused with another body)"},
        "401": {"description": "unauthorized"},
        "404": {"description": "unknown_method"},
        "413": {"description": "payload_too_large"},
        "422": {"description": "invalid_params"},
        "503": {"description": "overloaded / no_workers (with Retry-After)"},
    },
}


def install(app: FastAPI, view: FleetView) -> None:
    base: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not base:
            base.update(get_openapi(title=app.title, version=app.version,
                                    description=app.description, routes=app.routes))
            base["paths"] = {**fast_paths(), **base["paths"]}
        return with_methods(base, view.docs())

    app.openapi = openapi  # type: ignore[method-assign]


def fast_paths() -> dict[str, Any]:
    """The generic operations of the routes `gateway.fastpath` serves, from its table."""
    operations: dict[FastRoute, dict[str, Any]] = {CALL: CALL_OPERATION, SUBMIT: JOB_OPERATION}
    return {route.template: {route.verb.lower(): copy.deepcopy(operations[route])}
            for route in FAST_ROUTES}


def with_methods(base: dict[str, Any], docs: dict[str, dict[str, MethodDoc]]) -> dict[str, Any]:
    """The document `base` with an operation per announced method (pure: `base` is not changed)."""
    spec = copy.deepcopy(base)
    paths: dict[str, Any] = spec["paths"]
    generic_call, generic_job = paths[CALL_PATH]["post"], paths[JOB_PATH]["post"]
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for pool, methods in sorted(docs.items()):
        for method, doc in sorted(methods.items()):
            schemas.update(doc.defs)
            paths[CALL_PATH.replace("{method}", method)] = {
                "post": _call(generic_call, pool, method, doc)}
            paths[JOB_PATH.replace("{method}", method)] = {
                "post": _job(generic_job, pool, method, doc)}
    return spec


def _call(generic: dict[str, Any], pool: str, method: str, doc: MethodDoc) -> dict[str, Any]:
    result = {"type": "object", "required": ["id", "result"],
              "properties": {"id": {"type": "string"}, "result": doc.result or {}}}
    return _specialise(generic, pool, method, doc, "call", doc.summary or f"Call {method}",
                       lambda body: {"schema": doc.params},
                       {"description": "the method's result",
                        "content": {"application/json": {"schema": result}}})


def _job(generic: dict[str, Any], pool: str, method: str, doc: MethodDoc) -> dict[str, Any]:
    def body(generic_body: dict[str, Any]) -> dict[str, Any]:
        schema = copy.deepcopy(generic_body["schema"])
        schema["properties"]["params"] = doc.params
        return {"schema": schema}

    return _specialise(generic, pool, method, doc, "submit", f"Submit {method} as a job",
                       body, None)


def _specialise(generic: dict[str, Any], pool: str, method: str, doc: MethodDoc, verb: str,
                summary: str, body: Callable[[dict[str, Any]], dict[str, Any]],
                ok: dict[str, Any] | None) -> dict[str, Any]:
    operation = copy.deepcopy(generic)
    operation["operationId"] = re.sub(r"[^A-Za-z0-9_]", "_", f"{verb}_{pool}_{method}")
    operation["tags"] = [f"pool {pool}"]
    operation["summary"] = summary
    notes = [doc.description] if doc.description else []
    notes.append(f"Served by pool `{pool}`"
                 + (f"; hard time limit {doc.time_limit:g} s." if doc.time_limit else "."))
    operation["description"] = "\n\n".join(notes)
    operation["parameters"] = [p for p in operation.get("parameters", []) if p.get("in") != "path"]
    content = operation["requestBody"]["content"]
    content["application/json"] = body(content["application/json"])
    if ok is not None:
        operation["responses"]["200"] = ok
    return operation
