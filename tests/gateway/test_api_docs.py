"""The API docs show each method the fleet announced as its own endpoint, with the params and
result schemas its workers derived from their type hints; the document stays valid OpenAPI."""

from __future__ import annotations

from typing import Any

from openapi_spec_validator import validate
from pydantic import BaseModel, Field

from gateway.app import create_app
from gateway.settings import GatewaySettings
from protocol import WorkerEntry
from tests.support.gateway import Gateway, wait_for_workers
from workers import Pool


def _body(operation: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = operation["requestBody"]["content"]["application/json"]["schema"]
    return schema


def test_each_announced_method_is_an_endpoint_with_its_schemas(gateway: Gateway) -> None:
    entries = wait_for_workers(gateway, 1)
    with gateway.client() as http:
        spec = http.get("/openapi.json").json()
        assert http.get("/docs").status_code == 200
    validate(spec)

    greet = spec["paths"]["/v1/rpc/greet"]["post"]
    assert greet["tags"] == ["pool basic"]
    assert _body(greet)["required"] == ["name"]
    assert set(_body(greet)["properties"]) == {"name", "times"}
    ok = greet["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["properties"]["result"] == {"type": "string"}
    assert {"422", "503", "504"} <= set(greet["responses"])  # the errors of any call
    assert [p["name"] for p in greet["parameters"]] == ["timeout"]
    record = spec["paths"]["/v1/rpc/record"]["post"]
    assert record["summary"].startswith("Appends its tag to a log file")
    job = _body(spec["paths"]["/v1/jobs/greet"]["post"])
    assert job["properties"]["params"] == _body(greet)
    assert "callback_url" in job["properties"]
    assert "/v1/rpc/{method}" in spec["paths"]  # the generic route stays, for methods to come
    assert all("docs" not in entry for entry in entries)  # /v1/workers keeps the SPEC's shape


class Point(BaseModel):
    x: float
    y: float


class Route(BaseModel):
    """Unused docstring of the model."""

    stops: list[Point] = Field(min_length=2)


def test_nested_models_become_components_named_after_their_pool() -> None:
    pool = Pool("maps")

    @pool.method(time_limit=5)
    def length(params: Route) -> Point:
        """Length of a route.

        Sums the distances between its stops."""
        return params.stops[0]

    app = create_app(GatewaySettings())
    view = app.state.services.view
    view.update(WorkerEntry(id="h:maps:0", pool="maps", host="h", pid=1, slot=0,
                            methods=pool.methods, prefetch=1, concurrency=1, in_flight=0,
                            processed=0, failed=0, pss_bytes=None, cache_bytes=None,
                            last_seen="2026-12-01T00:00:00.000Z", docs=pool.docs()))
    spec = app.openapi()
    validate(spec)
    operation = spec["paths"]["/v1/rpc/length"]["post"]
    assert operation["summary"] == "Length of a route."
    assert operation["description"].startswith("Sums the distances between its stops.")
    assert "hard time limit 5 s" in operation["description"]
    stops = _body(operation)["properties"]["stops"]
    assert stops["items"] == {"$ref": "#/components/schemas/maps.Point"}
    assert set(spec["components"]["schemas"]["maps.Point"]["properties"]) == {"x", "y"}
    result = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert result["properties"]["result"]["required"] == ["x", "y"]  # the top model is inline


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    if isinstance(node, dict) and set(node) == {"$ref"}:  # a channel's message is a reference
        return _resolve(document, node["$ref"])
    return node


def test_the_amqp_contract_is_an_asyncapi_document_of_the_announced_methods(
    gateway: Gateway
) -> None:
    wait_for_workers(gateway, 1)
    with gateway.client() as http:
        document = http.get("/asyncapi.json").json()
    assert document["asyncapi"] == "3.0.0"
    for ref in _refs(document):  # every reference resolves inside the document
        _resolve(document, ref)
    greet = document["channels"]["basic.greet"]
    assert greet["address"] == "greet"  # the routing key on the rpcfleet exchange
    assert greet["bindings"]["amqp"]["exchange"]["name"] == "rpcfleet"
    request = _resolve(document, greet["messages"]["request"]["$ref"])
    assert request["payload"]["required"] == ["name"]
    assert "x-rpcfleet-deadline" in request["headers"]["properties"]
    operation = document["operations"]["call.basic.greet"]
    assert operation["action"] == "send"
    reply = _resolve(document, operation["reply"]["messages"][0]["$ref"])
    success, failure = reply["payload"]["oneOf"]
    assert success["properties"]["result"] == {"type": "string"}
    assert "invalid_params" in failure["properties"]["error"]["properties"]["code"]["enum"]
    control = {_resolve(document, m["$ref"])["name"]
               for m in document["channels"]["control"]["messages"].values()}
    assert control == {"SetPrefetch", "SetProcesses", "RetirePool", "Cancel", "Replayed"}


def test_nested_models_resolve_in_the_asyncapi_document_too() -> None:
    from gateway.asyncapi import asyncapi_document

    pool = Pool("maps")

    @pool.method
    def length(params: Route) -> Point:
        return params.stops[0]

    document = asyncapi_document({"maps": pool.docs()})
    request = document["components"]["messages"]["maps.length.request"]
    stops = request["payload"]["properties"]["stops"]
    assert _resolve(document, stops["items"]["$ref"])["required"] == ["x", "y"]
    for ref in _refs(document):
        _resolve(document, ref)
