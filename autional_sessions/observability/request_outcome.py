"""What became of a request, for the metrics and the access log: the operation Connexion routed it to
(named by its path template in the spec), its status, and how long it took.

A request is named by its template (`/sessions/user/{user_id}/sessions`), never by its path: a path
carries user ids, which must not become metric label values or appear in a log line.

The template comes from Connexion's own routing, so it names the operation Connexion actually ran: its
routing middleware puts the operation id in `scope["extensions"]["connexion_routing"]`. It does so on a
shallow copy of the scope it received, though, so a middleware outside it sees the operation id only when
the scope already carries the `extensions` dict and that dict's `connexion_routing` entry, which the copy
then shares. Uvicorn's scopes carry no `extensions` (Starlette's TestClient's do, which hides the
problem in tests), so the request context middleware (`request_context`) puts both in place before
passing the request on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connexion.middleware.abstract import ROUTING_CONTEXT
from starlette.types import Scope

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
    """Make Connexion's routing result land in this very scope (see the module docstring). It relies on
    how Connexion's routing copies the scope: tests/integration/test_connexion_stack.py fails if that
    changes."""
    scope.setdefault("extensions", {}).setdefault(ROUTING_CONTEXT, {})
