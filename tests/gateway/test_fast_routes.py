"""The fast path serves two routes in front of FastAPI (`gateway.fastpath.FAST_ROUTES`); its
claims are one table, which the OpenAPI document reads and which no FastAPI route may fall under
(a route added there would silently be taken for a method name)."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute

from gateway.app import create_app
from gateway.fastpath import CALL, FAST_ROUTES, SUBMIT, claimed
from gateway.settings import GatewaySettings


def shadowed(routes: list[BaseRoute]) -> list[str]:
    """The HTTP routes of an app (included routers' too) that the fast path would take before
    they are reached."""
    found = []
    for route in iter_route_contexts(routes):
        if route.path and route.methods:  # a WebSocket route has no methods and is never claimed
            path = re.sub(r"\{[^}]+\}", "x", route.path)
            found += [f"{verb} {route.path}" for verb in sorted(route.methods)
                      if claimed(path, verb) is not None]
    return found


def test_the_fast_path_claims_a_call_any_verb_and_a_submission_only_by_post() -> None:
    assert claimed("/v1/rpc/echo", "POST") == (CALL, "echo")
    assert claimed("/v1/rpc/echo", "GET") == (CALL, "echo")  # answered 405 there
    assert claimed("/v1/jobs/echo", "POST") == (SUBMIT, "echo")
    assert claimed("/v1/jobs/job_1", "GET") is None  # reading and cancelling jobs: FastAPI's
    assert claimed("/v1/jobs/job_1", "DELETE") is None
    assert claimed("/v1/jobs/job_1/events", "POST") is None  # one segment only
    assert claimed("/v1/rpc/", "POST") is None


def test_no_route_of_the_gateway_falls_under_a_fast_route() -> None:
    app = create_app(GatewaySettings())
    assert shadowed(app.routes) == []
    assert any((r.path or "").startswith("/v1/jobs/") for r in iter_route_contexts(app.routes))


def test_a_route_added_under_a_fast_route_is_caught() -> None:
    app = FastAPI()

    @app.post("/v1/jobs/{job_id}")
    def restart(job_id: str) -> None: ...

    @app.get("/v1/rpc/{method}")
    def describe(method: str) -> None: ...

    assert shadowed(app.routes) == ["POST /v1/jobs/{job_id}", "GET /v1/rpc/{method}"]


def test_the_api_document_describes_the_fast_routes_from_their_table() -> None:
    paths = create_app(GatewaySettings()).openapi()["paths"]
    for route in FAST_ROUTES:
        assert list(paths[route.template]) == [route.verb.lower()], route.template
