"""What became of a request, for the metrics and the access log: the operation Connexion routed it to
(named by its path template in the spec), its status, and how long it took.

A request is named by its template (`/sessions/user/{user_id}/sessions`), never by its path: a path
carries user ids, which must not become metric label values or appear in a log line.

The template comes from Connexion's own routing, so it names the operation Connexion actually ran: its
routing middleware puts the operation id in `scope["extensions"]["connexion_routing"]`. It does so on a
shallow copy of the scope it received, though, so a middleware outside it sees the operation id only when
the scope already carries the `extensions` dict and that dict's `connexion_routing` entry, which the copy
then shares. Uvicorn's scopes carry no `extensions` (Starlette's TestClient's do, which hides the
problem in tests), so `ObservedMiddleware` puts both in place before passing the request on.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from connexion.middleware.abstract import ROUTING_CONTEXT
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from autional_sessions.spec import HTTP_METHODS

# The route of a request that matched no operation: an unknown path, a method the path does not take,
# or a path served outside the spec (the Swagger UI, the spec itself).
UNMATCHED = "unmatched"


class RouteTemplates:
    """Finds the path template of the operation a request was routed to, from the spec's operation ids."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self._templates = {
            operation["operationId"]: path
            for path, item in spec["paths"].items()
            for method, operation in item.items()
            if method in HTTP_METHODS and "operationId" in operation
        }

    def of(self, scope: Scope) -> str:
        """The template of the request's operation (behind the API's base path), or "unmatched". Call it
        once the request has passed Connexion's routing, with a scope `ObservedMiddleware` prepared."""
        routing = scope.get("extensions", {}).get(ROUTING_CONTEXT) or {}
        template = self._templates.get(routing.get("operation_id"))
        if template is None:
            return UNMATCHED
        return routing.get("api_base_path", "") + template


def expose_routing(scope: Scope) -> None:
    """Make Connexion's routing result land in this very scope (see the module docstring)."""
    scope.setdefault("extensions", {}).setdefault(ROUTING_CONTEXT, {})


class ObservedMiddleware:
    """Base of the middlewares that record each http request once it is over; subclasses implement
    `observe`. They go outside Connexion's exception middleware (`MiddlewarePosition.BEFORE_EXCEPTION`),
    so that they see the status of the problem response it renders for an error, as the client does."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        expose_routing(scope)
        started = time.perf_counter()
        # What the client gets when no response starts: uvicorn answers 500 for an app that sent none.
        status = 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        except Exception:
            # The server turns an exception that escapes the app into a 500 (or a cut response, if one
            # had started): either way the request failed.
            status = 500
            raise
        finally:
            self.observe(scope, status, time.perf_counter() - started)
