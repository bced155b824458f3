"""Routes beside the API's operations: the problem pages that problem `type` URIs point at, and the spec
as YAML. Connexion's routes all come from the spec, so these are answered by a small
router placed in its middleware stack (inside the exception middleware, so that a wrong method on them
is a problem response like any other), which passes every other request on."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from autional_sessions.docs.site import problem_routes
from autional_sessions.spec import spec_path


def service_routes(spec: Mapping[str, Any], *, problem_base_uri: str) -> list[Route]:
    yaml_text = spec_path().read_bytes()

    async def spec_yaml(_request: Request) -> Response:
        return Response(yaml_text, media_type="application/yaml")

    async def to_docs(_request: Request) -> Response:
        # The problem pages link to the reference as ../../index.html, as in the static site.
        return RedirectResponse("/ui/", status_code=308)

    return [
        *problem_routes(spec, problem_base_uri=problem_base_uri),
        Route("/openapi.yaml", spec_yaml, methods=["GET"]),
        Route("/", to_docs, methods=["GET"]),
        Route("/index.html", to_docs, methods=["GET"]),
    ]


class ServiceRoutesMiddleware:
    def __init__(self, app: ASGIApp, *, routes: list[Route]) -> None:
        self._app = app
        self._router = Router(routes=routes, default=app)
        # The first path segments these routes answer: every other request (the API's) goes straight on,
        # without a router match on its way.
        self._segments = frozenset(route.path.split("/")[1] for route in routes)

    # A plain function that hands back the awaitable of the app it picks: no coroutine of this layer's
    # own on every request it passes on.
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] == "http" and scope["path"].split("/", 2)[1] in self._segments:
            return self._router(scope, receive, send)
        return self._app(scope, receive, send)
