"""The parts this server swaps into Connexion's stack, on a small spec of their own: they keep Connexion
as the router and validator, and fail loudly if a Connexion upgrade changes what they build on."""

from __future__ import annotations

import json

import pytest
from connexion.lifecycle import ConnexionResponse
from connexion.middleware import ConnexionMiddleware
from connexion.middleware.abstract import ROUTING_CONTEXT
from connexion.middleware.context import ContextMiddleware
from connexion.middleware.exceptions import ExceptionMiddleware
from connexion.middleware.lifespan import LifespanMiddleware
from connexion.middleware.request_validation import RequestValidationMiddleware
from connexion.middleware.response_validation import ResponseValidationMiddleware
from connexion.middleware.routing import RoutingMiddleware
from connexion.middleware.security import SecurityMiddleware
from connexion.middleware.server_error import ServerErrorMiddleware
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from prometheus_client import CollectorRegistry
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route
from starlette.testclient import TestClient

from autional_sessions.http.app import middleware_stack
from autional_sessions.http.dispatch import OperationDispatcher
from autional_sessions.http.docs_ui import SwaggerUIPassThrough
from autional_sessions.http.parameter_validation import ParameterValidationMiddleware
from autional_sessions.http.rate_limits import ClientRateLimitMiddleware, SubjectRateLimitMiddleware
from autional_sessions.http.service_routes import ServiceRoutesMiddleware
from autional_sessions.observability.metrics import MetricsEndpointMiddleware, metrics_app
from autional_sessions.observability.request_context import RequestContextMiddleware
from autional_sessions.observability.request_outcome import expose_routing
from autional_sessions.problems.factory import ProblemError
from autional_sessions.security.rate_limiter import RateLimits
from tests.observed_app import call

HERE = __name__


async def echo(item_id: int, greeting: str, session: str | None = None, *, counter):
    # Header parameters are validated, not passed: their names are not Python names (as in Connexion).
    counter.append(item_id)
    return {"item_id": item_id, "greeting": greeting, "session": session}, 200


async def misspelt_service(item_id: int, *, countr):
    return {"item_id": item_id}, 200


async def misspelt_parameter(itemid: int):
    return {"item_id": itemid}, 200


def sync_echo(item_id: int):
    return {"item_id": item_id}, 200


def spec(operation_id: str) -> dict:
    return {
        "openapi": "3.0.3",
        "info": {"title": "stack", "version": "1"},
        "paths": {
            "/items/{item_id}": {
                "get": {
                    "operationId": operation_id,
                    "parameters": [
                        {"name": "item_id", "in": "path", "required": True, "schema": {"type": "integer"}},
                        {"name": "X-Tenant", "in": "header", "required": True, "schema": {"type": "string"}},
                        {"name": "greeting", "in": "query", "schema": {"type": "string", "default": "hi"}},
                        {"name": "session", "in": "cookie", "schema": {"type": "string", "minLength": 4}},
                    ],
                    "responses": {"200": {"description": "ok"}},
                }
            }
        },
    }


def app_for(operation_id: str, counter: list) -> ConnexionMiddleware:
    app = ConnexionMiddleware(
        OperationDispatcher({"counter": counter}), middlewares=middleware_stack(validate_responses=False)
    )
    app.add_api(spec(operation_id), strict_validation=True)

    async def invalid(_request, exc: ProblemError) -> ConnexionResponse:
        fields = [v.field for v in exc.errors]
        return ConnexionResponse(status_code=400, mimetype="application/json", body=json.dumps(fields))

    app.add_error_handler(ProblemError, invalid)
    return app


def test_the_stack_is_connexions_default_with_three_documented_swaps():
    # If a Connexion release adds a middleware to its default stack (say a security one), this fails, so
    # that the addition is looked at rather than silently left out of this server.
    swaps = {
        RequestValidationMiddleware: ParameterValidationMiddleware,
        SwaggerUIMiddleware: SwaggerUIPassThrough,
    }
    expected = [
        swaps.get(m, m) for m in ConnexionMiddleware.default_middlewares if m is not ContextMiddleware
    ]

    async def last_resort(_request, _exc):
        raise AssertionError

    stack = middleware_stack(validate_responses=True, last_resort=last_resort)

    assert stack[0] is RequestContextMiddleware
    assert [getattr(m, "func", m) for m in stack[1:]] == expected
    assert stack[1].keywords == {"handler": last_resort}


def test_every_layer_is_in_one_list_outermost_first():
    # The whole stack, every optional layer on: its order is set here and nowhere else (no insertion by
    # position), and one layer observes requests (ids, trace context, stamps, metrics, access log).
    async def last_resort(_request, _exc):
        raise AssertionError

    stack = middleware_stack(
        validate_responses=True,
        last_resort=last_resort,
        route_of=lambda _scope: "unmatched",
        recorders=[lambda *_outcome: None],
        metrics_endpoint=metrics_app(CollectorRegistry()),
        cors={"allow_origins": ["https://app.example.com"]},
        service_routes=[Route("/openapi.yaml", lambda _request: None)],
        rate_limits=RateLimits("1/minute"),
    )

    assert [getattr(m, "func", m) for m in stack] == [
        RequestContextMiddleware,
        ServerErrorMiddleware,
        MetricsEndpointMiddleware,
        CORSMiddleware,
        ExceptionMiddleware,
        ServiceRoutesMiddleware,
        SwaggerUIPassThrough,
        ClientRateLimitMiddleware,
        RoutingMiddleware,
        SecurityMiddleware,
        SubjectRateLimitMiddleware,
        ParameterValidationMiddleware,
        ResponseValidationMiddleware,
        LifespanMiddleware,
    ]
    assert stack[0].keywords["unrecorded_paths"] == {"/metrics"}


def test_the_swagger_ui_layer_passes_api_paths_straight_to_the_next_layer_and_still_serves_the_docs():
    # SwaggerUIPassThrough subclasses Connexion's middleware and reads its `app` and `router`: if a
    # release renames them or shapes the router otherwise, this fails.
    app = app_for(f"{HERE}.echo", [])
    app.app, app.middleware_stack = app._build_middleware_stack()
    layers = list(app.middleware_stack)
    (index,) = [i for i, layer in enumerate(layers) if isinstance(layer, SwaggerUIPassThrough)]
    docs = layers[index]

    assert isinstance(docs, SwaggerUIMiddleware)
    assert docs.app is layers[index + 1]
    assert docs.segments == {"ui", "openapi.json", "openapi.yaml"}
    with TestClient(app) as client:
        assert client.get("/ui/").status_code == 200
        assert client.get("/openapi.json").json()["info"]["title"] == "stack"
        assert client.get("/items/7", headers={"X-Tenant": "t"}).json()["item_id"] == 7
    # Behind a root path (uvicorn --root-path), the docs are found below it.
    with TestClient(app, root_path="/prefix") as client:
        assert client.get("/prefix/ui/").status_code == 200
        assert client.get("/prefix/openapi.json").status_code == 200


def test_header_query_path_and_cookie_parameters_reach_the_handler_typed():
    counter: list = []
    with TestClient(app_for(f"{HERE}.echo", counter), cookies={"session": "abcd"}) as client:
        response = client.get("/items/7", headers={"X-Tenant": "t_1"})

    assert response.status_code == 200, response.text
    assert response.json() == {"item_id": 7, "greeting": "hi", "session": "abcd"}
    assert counter == [7]


@pytest.mark.parametrize(
    ("headers", "cookies", "field"),
    [({}, {}, "X-Tenant"), ({"X-Tenant": "t"}, {"session": "ab"}, "session")],
)
def test_header_and_cookie_violations_are_refused_before_the_handler(headers, cookies, field):
    counter: list = []
    app = app_for(f"{HERE}.echo", counter)
    with TestClient(app, raise_server_exceptions=False, cookies=cookies) as client:
        response = client.get("/items/7", headers=headers)

    assert response.status_code == 400
    assert response.json() == [field]
    assert counter == []


def test_a_synchronous_handler_is_refused_at_start_up():
    with pytest.raises(TypeError, match="async def"), TestClient(app_for(f"{HERE}.sync_echo", [])):
        pass


@pytest.mark.parametrize(
    ("handler", "missing"), [("misspelt_service", "countr"), ("misspelt_parameter", "itemid")]
)
def test_a_handler_asking_for_an_argument_nothing_gives_is_refused_at_start_up(handler, missing):
    # Not a 500 on the operation's first request: the app does not start, and says which name is wrong.
    with (
        pytest.raises(TypeError, match=rf"asks for {missing}, which is neither"),
        TestClient(app_for(f"{HERE}.{handler}", [])),
    ):
        pass


@pytest.mark.parametrize("exposed", [True, False])
def test_connexions_routing_reaches_a_middleware_outside_it_only_through_expose_routing(exposed):
    # The metrics, the access log and the spans name a request by the operation Connexion routed it to,
    # read by a middleware outside Connexion's routing. Connexion's routing middleware writes the result on
    # a shallow copy of the scope; `expose_routing` puts the dict it writes into in place beforehand. If a
    # Connexion release changes either (a deep copy, or no copy), this fails: every metric, log line and
    # span would silently say "unmatched", or `expose_routing` is no longer needed.
    seen: list[object] = []

    class Outside:
        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            if scope["type"] == "http" and exposed:
                expose_routing(scope)
            await self.app(scope, receive, send)
            if scope["type"] == "http":
                seen.append((scope.get("extensions") or {}).get(ROUTING_CONTEXT, {}).get("operation_id"))

    async def routed(scope, receive, send):
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    # Connexion's routing alone, with nothing of this server's stack around it.
    app = ConnexionMiddleware(routed, middlewares=[Outside, RoutingMiddleware])
    app.add_api(spec(f"{HERE}.echo"))
    # Through httpx, whose scopes carry no `extensions`, like uvicorn's (Starlette's TestClient's do).
    response = call(app, "GET", "/items/7")

    assert response.status_code == 204, response.text
    assert seen == ([f"{HERE}.echo"] if exposed else [None])
