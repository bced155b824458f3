"""The innermost app of Connexion's middleware stack: calls the handler Connexion routed the request to.

Connexion's own `AsyncApp` re-decorates the handler on every request (inspecting its signature each
time), converts its parameters again after validation has already done so, and infers and serializes
the response in a generic response decorator. Here each operation's handler is resolved (by Connexion's
resolver, from the operationId) and inspected once, when the app is built; a request only gathers the
arguments validation produced, calls the handler, and sends its JSON.

Handlers are `async def` (refused at start-up otherwise: nothing on the request path hops into a thread
pool). They take their parameters by name, `user` (the token's subject) and `token_info` (its claims)
when they ask for them, and any service of the app by name (say `sessions`), and return
`(body, status)`: the body is serialized with orjson as the operation's JSON media type (None: no
content, for a 204).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import orjson
from connexion.middleware.abstract import RoutedAPI, RoutedMiddleware
from connexion.operations import AbstractOperation
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Mount, Route, Router
from starlette.types import Receive, Scope, Send

from autional_sessions.http.parameter_validation import validated_arguments
from autional_sessions.observability.request_context import current_request
from autional_sessions.spec import HTTP_METHODS

_CONTEXT_ARGUMENTS = ("user", "token_info")


class _Endpoint:
    def __init__(self, operation: AbstractOperation, services: Mapping[str, Any], *, stamp: bool) -> None:
        function = operation.function
        if not inspect.iscoroutinefunction(function):
            raise TypeError(f"{operation.operation_id} must be an async def function")
        accepted = inspect.signature(function).parameters
        _check_satisfiable(operation, accepted, services)
        self._function = function
        self._services = {name: service for name, service in services.items() if name in accepted}
        self._context_arguments = tuple(name for name in _CONTEXT_ARGUMENTS if name in accepted)
        self._parameters = frozenset(accepted)
        self._stamp = stamp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        arguments = {k: v for k, v in validated_arguments(scope).items() if k in self._parameters}
        if self._context_arguments:
            context = scope["extensions"].get("connexion_context", {})
            for name in self._context_arguments:
                arguments[name] = context.get(name)
        body, status = await self._function(**arguments, **self._services)
        headers = []
        if self._stamp:
            # The headers the spec requires of every response, which the outermost middleware writes,
            # here already for response validation (when on), which runs inside it.
            request = current_request()
            headers += [(b"x-request-id", request.request_id.encode()), (b"cache-control", b"no-store")]
            if request.span is not None:
                headers.append((b"traceparent", request.span.traceparent.encode()))
        if body is None:  # 204: no content, and so no content type
            payload = b""
        else:
            payload = orjson.dumps(body)
            headers.append((b"content-type", b"application/json"))
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def _check_satisfiable(
    operation: AbstractOperation, accepted: Mapping[str, inspect.Parameter], services: Mapping[str, Any]
) -> None:
    """Refuse, at start-up, a handler that asks for an argument nothing gives: a misspelt parameter or
    service name would otherwise be a 500 on the operation's first request."""
    given = {p["name"] for p in operation.parameters} | set(_CONTEXT_ARGUMENTS) | set(services)
    missing = [
        name
        for name, parameter in accepted.items()
        if name not in given
        and parameter.default is inspect.Parameter.empty
        and parameter.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if missing:
        raise TypeError(
            f"{operation.operation_id}: the handler asks for {', '.join(missing)}, which is neither a "
            f"parameter of the operation, nor {' or '.join(_CONTEXT_ARGUMENTS)}, nor a service of the app "
            f"({', '.join(sorted(services))})"
        )


async def _not_an_operation(_request: Request) -> None:
    # The router below exists to answer 405 with Allow for a known path; a request it would route to an
    # operation that Connexion's own routing did not is not one of the API's.
    raise HTTPException(404)


class _DispatchAPI(RoutedAPI[_Endpoint]):
    def __init__(self, *args: Any, services: Mapping[str, Any], **kwargs: Any) -> None:
        # Connexion's own response validation, when the API asks for it, needs the stamped headers.
        self._stamp = bool(kwargs.get("validate_responses"))
        super().__init__(*args, **kwargs)
        self._services = services
        methods: dict[str, list[str]] = {}
        for path, operations in self.specification.get("paths", {}).items():
            methods[path] = [m.upper() for m in operations if m in HTTP_METHODS]
        # For requests that Connexion routed to no operation: 404, or 405 with Allow for a known path.
        # Mounted as Connexion mounts its own router, so that both match the same paths.
        routes = [Route(path, _not_an_operation, methods=m) for path, m in methods.items()]
        self.not_routed = Router(routes=[Mount(self.base_path, routes=routes)])
        self.add_paths()

    def make_operation(self, operation: AbstractOperation) -> _Endpoint:
        return _Endpoint(operation, self._services, stamp=self._stamp)


class OperationDispatcher(RoutedMiddleware[_DispatchAPI]):
    """Calls each operation's handler; built once per app, with the app's services."""

    api_cls = _DispatchAPI

    def __init__(self, services: Mapping[str, Any]) -> None:
        super().__init__(self._not_routed)
        self._services = services

    def add_api(self, specification: Any, **kwargs: Any) -> _DispatchAPI:
        kwargs.pop("services", None)
        return super().add_api(specification, services=self._services, **kwargs)

    async def _not_routed(self, scope: Scope, receive: Receive, send: Send) -> None:
        for apis in self.apis.values():
            for api in apis:
                await api.not_routed(scope, receive, send)
                return
        raise HTTPException(404)
