"""The AMQP contract as an AsyncAPI 3.0 document (GET /asyncapi.json), built from what the fleet
announced, as /openapi.json is for HTTP: a worker or a client in another language joins from a
standard file. Pure: `asyncapi_document(docs)` builds it; the route serves it.

For each announced method: a channel on the `rpcfleet` exchange whose address is the method's name
(the routing key), the request message (its params schema, AMQP properties and headers) and its
reply (`{"ok", "result"}` or `{"ok", "error"}`) on the address the request's `reply_to` gives.
Besides: the control commands (`rpcfleet.control`) and the worker beats (`rpcfleet.events`).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from protocol import (
    Cancel,
    ErrorCode,
    JobEvent,
    MethodDoc,
    Replayed,
    SetPrefetch,
    SetProcesses,
    WorkerEntry,
    names,
)
from protocol.fleet import RetirePool

AMQP_BINDING = "0.3.0"
CONTROL_MESSAGES = ("SetPrefetch", "SetProcesses", "RetirePool", "Cancel", "Replayed")


def _exchange(name: str, kind: str) -> dict[str, Any]:
    return {"is": "routingKey", "bindingVersion": AMQP_BINDING,
            "exchange": {"name": name, "type": kind, "durable": True, "autoDelete": False,
                         "vhost": "/"}}


REQUEST_HEADERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        names.HEADER_DEADLINE: {"type": "integer", "description": "epoch ms: past it, the "
                                "request is dead-lettered `expired` unstarted"},
        names.HEADER_ATTEMPT: {"type": "integer", "minimum": 1,
                               "description": "1 for the first start; a redelivery counts"},
        "traceparent": {"type": "string", "description": "W3C trace context, passed to `job`"},
        "tracestate": {"type": "string"},
    },
}
REPLY_HEADERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        names.HEADER_WORKER: {"type": "string", "description": "the worker id that answered"},
        names.HEADER_ATTEMPT: {"type": "integer", "minimum": 1},
        names.HEADER_STARTED_AT: {"type": "integer", "description": "epoch ms, when it ran"},
        names.HEADER_FINISHED_AT: {"type": "integer", "description": "epoch ms"},
    },
}
FAILURE: dict[str, Any] = {
    "type": "object", "required": ["ok", "error"],
    "properties": {"ok": {"const": False}, "error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string", "enum": [str(code) for code in ErrorCode]},
                       "message": {"type": "string"}}}},
}


def asyncapi_document(docs: dict[str, dict[str, MethodDoc]]) -> dict[str, Any]:
    """The document for `docs` (per pool, per method, as the workers announced them)."""
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    replies: dict[str, Any] = {}
    for pool, methods in sorted(docs.items()):
        for method, doc in sorted(methods.items()):
            key = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{pool}.{method}")
            schemas.update(copy.deepcopy(doc.defs))
            messages[f"{key}.request"] = _request(pool, method, doc)
            messages[f"{key}.reply"] = _reply(method, doc)
            channels[key] = {
                "address": method,
                "title": f"{method} (pool {pool})",
                "description": doc.description or doc.summary or f"Requests for {method}.",
                "messages": {"request": {"$ref": f"#/components/messages/{key}.request"}},
                "bindings": {"amqp": _exchange(names.EXCHANGE, "direct")},
            }
            replies[key] = {"$ref": f"#/components/messages/{key}.reply"}
            operations[f"call.{key}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{key}"},
                "summary": doc.summary or f"Call {method}",
                "messages": [{"$ref": f"#/channels/{key}/messages/request"}],
                "bindings": {"amqp": {"mandatory": True, "bindingVersion": AMQP_BINDING}},
                "reply": {"address": {"location": "$message.header#/reply_to"},
                          "channel": {"$ref": "#/channels/replies"},
                          "messages": [{"$ref": f"#/channels/replies/messages/{key}"}]},
            }
    channels["replies"] = {
        "address": None,  # the request's reply_to: direct reply-to (a call), or a jobs queue
        "description": "Replies, to the `reply_to` of their request, with its `correlation_id`: "
                       f"`{names.DIRECT_REPLY_TO}` for a sync call (transient), "
                       "`rpcfleet.replies.{store}` for a job (persistent, confirmed).",
        "messages": replies,
    }
    for name, model in (("SetPrefetch", SetPrefetch), ("SetProcesses", SetProcesses),
                        ("RetirePool", RetirePool), ("Cancel", Cancel), ("Replayed", Replayed),
                        ("WorkerEntry", WorkerEntry), ("JobEvent", JobEvent)):
        schemas.update(_model_schema(name, model))
    messages.update({
        f"control.{name}": {"name": name, "contentType": names.CONTENT_TYPE,
                            "payload": {"$ref": f"#/components/schemas/{name}"}}
        for name in CONTROL_MESSAGES})
    messages["events.beat"] = {
        "name": "WorkerEntry", "contentType": names.CONTENT_TYPE,
        "summary": "A consumer's beat, every RPCFLEET_BEAT_INTERVAL and at once on a change",
        "payload": {"$ref": "#/components/schemas/WorkerEntry"}}
    messages["events.job"] = {
        "name": "JobEvent", "contentType": names.CONTENT_TYPE,
        "summary": "A job's start, progress or end, as its worker saw it (fire and forget)",
        "payload": {"$ref": "#/components/schemas/JobEvent"}}
    channels["control"] = {
        "address": "{target}",
        "description": "Commands to consumers: `pool.{pool}`, `worker.{id}` or `all`.",
        "parameters": {"target": {"description": "pool.{pool}, worker.{id} or all"}},
        "messages": {name: {"$ref": f"#/components/messages/control.{name}"}
                     for name in CONTROL_MESSAGES},
        "bindings": {"amqp": _exchange(names.CONTROL_EXCHANGE, "topic")},
    }
    channels["events"] = {
        "address": "{kind}",
        "description": "`worker.{pool}.{slot}` beats and `job.{id}.{started|progress|finished}`.",
        "parameters": {"kind": {"description": "worker.{pool}.{slot} or job.{id}.{event}"}},
        "messages": {"beat": {"$ref": "#/components/messages/events.beat"},
                     "job": {"$ref": "#/components/messages/events.job"}},
        "bindings": {"amqp": _exchange(names.EVENTS_EXCHANGE, "topic")},
    }
    operations["control.receive"] = {"action": "receive", "channel": {"$ref": "#/channels/control"},
                                     "summary": "What each consumer listens to"}
    operations["events.send"] = {"action": "send", "channel": {"$ref": "#/channels/events"},
                                 "summary": "What each consumer announces"}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "rpcfleet AMQP contract", "version": "1.1",
                 "description": "Requests, replies, control commands and events of an rpcfleet "
                                "fleet over RabbitMQ, for the methods its workers announced."},
        "defaultContentType": names.CONTENT_TYPE,
        "servers": {"broker": {"host": "{host}", "protocol": "amqp", "protocolVersion": "0-9-1",
                               "variables": {"host": {"default": "localhost:5672"}}}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def _request(pool: str, method: str, doc: MethodDoc) -> dict[str, Any]:
    notes = f"Served by pool `{pool}`" + (f"; hard time limit {doc.time_limit:g} s."
                                          if doc.time_limit else ".")
    return {
        "name": method, "title": f"{method} request", "summary": doc.summary or method,
        "description": notes, "contentType": names.CONTENT_TYPE,
        "correlationId": {"location": "$message.header#/correlation_id"},
        "headers": REQUEST_HEADERS,
        "payload": copy.deepcopy(doc.params),
        "bindings": {"amqp": {"messageType": method, "bindingVersion": AMQP_BINDING}},
    }


def _reply(method: str, doc: MethodDoc) -> dict[str, Any]:
    success = {"type": "object", "required": ["ok", "result"],
               "properties": {"ok": {"const": True}, "result": copy.deepcopy(doc.result or {})}}
    return {
        "name": f"{method}.reply", "title": f"{method} reply", "contentType": names.CONTENT_TYPE,
        "correlationId": {"location": "$message.header#/correlation_id"},
        "headers": REPLY_HEADERS,
        "payload": {"oneOf": [success, FAILURE]},
    }


def _model_schema(name: str, model: Any) -> dict[str, Any]:
    """A pydantic model's JSON Schema, its $defs lifted into components (`{name}.{Def}`)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/" + name + ".{model}")
    defs = schema.pop("$defs", {})
    lifted = {f"{name}.{key}": value for key, value in defs.items()}
    return {name: schema, **lifted}
