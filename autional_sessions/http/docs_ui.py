"""Connexion's Swagger UI middleware, which passes a request that none of its routes can answer straight
on, without a trip through its router."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from starlette.routing import Mount, Router
from starlette.types import ASGIApp, Receive, Scope, Send


class SwaggerUIPassThrough(SwaggerUIMiddleware):
    """`SwaggerUIMiddleware`, except that a request whose first path segment none of its routes has goes
    to the next layer at once.

    Why a subclass: Connexion's middleware sends every request through its Starlette router (a mount at
    the API's base path, a copy of the scope, a context variable) before it passes an API request on,
    which was 4 to 5 % of a request's time in the profile. This class reads the first path segments of
    the routes its router holds once an API is added (`/ui`, `/openapi.json`) and leaves every other path
    alone. It relies on two attributes of the base class beyond its constructor and methods: `app` (the
    next layer) and `router` (where `add_api` mounts the docs routes).
    `tests/integration/test_connexion_stack.py` fails if a Connexion release changes either.
    """

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        # None: a route whose first segment is a parameter, or a router of another shape; every request
        # then goes through the router, as in Connexion's own class.
        self.segments: frozenset[str] | None = frozenset()

    def add_api(self, *args: Any, **kwargs: Any) -> None:
        super().add_api(*args, **kwargs)
        self.segments = _first_segments(self.router)

    # A plain function that hands back the awaitable of the app it picks: no coroutine of this layer's
    # own on every API request.
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:  # type: ignore[override]
        if scope["type"] == "http" and self.segments is not None:
            path, root = scope["path"], scope.get("root_path", "")
            if root and path.startswith(root):  # routes match below the root path, as Starlette's do
                path = path[len(root) :]
            if (path.split("/", 2)[1] if path.startswith("/") else "") not in self.segments:
                return self.app(scope, receive, send)
        return super().__call__(scope, receive, send)


def _first_segments(router: Router) -> frozenset[str] | None:
    """The first path segments of every route under `router`'s mounts, or None if one cannot be told."""
    segments = set()
    for mount in router.routes:
        inner = getattr(mount, "app", None)
        if not isinstance(mount, Mount) or not isinstance(inner, Router):
            return None
        for route in inner.routes:
            path = getattr(route, "path", None)
            if not isinstance(path, str):
                return None
            first = f"{mount.path}{path}".split("/", 2)[1]
            if "{" in first:
                return None
            segments.add(first)
    return frozenset(segments)
