"""The error handlers: every exception a request can end in becomes a problem of the catalogue.

Our own `ProblemError`s are rendered as raised; the framework's exceptions (Connexion's and Starlette's,
for what the spec rejects before our code runs) get a problem type by status and a text of ours, in the
caller's language; a database outage is a 503 with `Retry-After`; anything else is the internal-error
problem, logged with the request's id. `last_resort` answers an error raised while handling an error.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable

import asyncpg
from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from connexion.middleware import ConnexionMiddleware
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

from autional_sessions.config import Settings
from autional_sessions.db.errors import DatabaseUnavailable
from autional_sessions.observability.metrics import record_database_error
from autional_sessions.observability.request_context import current_request
from autional_sessions.problems.factory import ProblemCatalogue, ProblemError
from autional_sessions.problems.languages import N_
from autional_sessions.security.bearer_auth import MISSING_CHALLENGE
from autional_sessions.spec import HTTP_METHODS

logger = logging.getLogger("autional_sessions")

# Connexion and Starlette raise their own exceptions for what the spec rejects before our code runs;
# each HTTP status they use maps to one problem type of our catalogue.
FRAMEWORK_PROBLEM_TYPES = {
    400: "invalid-request",
    401: "invalid-token",
    404: "route-not-found",
    405: "method-not-allowed",
}
# The details of the problems made here, and of the framework's: its own texts are English only.
INTERNAL_ERROR = N_("internal-error", "An unexpected error occurred; quote request_id %(request_id)s")
_UNAVAILABLE = N_("service-unavailable", "The session store is unavailable; retry in %(retry_after)d seconds")
_NO_ROUTE = N_("route-not-found", "No operation of this API has the path %(path)s")
_NO_METHOD = N_("method-not-allowed", "This path does not take %(method)s; see the Allow header")
_BAD_TOKEN = N_("invalid-token", "The token is not acceptable")
_BAD_REQUEST = N_("invalid-request", "The request does not conform to the contract of this operation")


def allowed_methods(spec: dict) -> Callable[[str], str | None]:
    """The `Allow` value of a request path: the methods the spec gives its path (HEAD with GET). Concrete
    paths match before templated ones, as OpenAPI matches them: `.../sessions/revocations` is that path, not
    a `.../sessions/{session_id}`."""
    templates = []
    for template, operations in sorted(spec["paths"].items(), key=lambda item: item[0].count("{")):
        methods = {m.upper() for m in operations if m in HTTP_METHODS}
        if "GET" in methods:
            methods.add("HEAD")
        regex, _, _ = compile_path(template)
        templates.append((regex, ", ".join(sorted(methods))))

    def allowed(path: str) -> str | None:
        return next((methods for regex, methods in templates if regex.match(path)), None)

    return allowed


def last_resort(
    catalogue: ProblemCatalogue,
) -> Callable[[ConnexionRequest, Exception], Awaitable[ConnexionResponse]]:
    """The answer to an error no handler could turn into a response (a fault inside a handler): the
    internal-error problem, made with as little as can go wrong."""

    async def answer(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        request_id = current_request().request_id
        with contextlib.suppress(Exception):  # the log may be what failed
            logger.error("error while handling an error (request_id=%s)", request_id, exc_info=exc)
        return catalogue.render(
            ProblemError("internal-error", INTERNAL_ERROR, args={"request_id": request_id}),
            accept_language(request),
        )

    return answer


def accept_language(request: ConnexionRequest) -> str | None:
    # Read only when a problem is made: a successful response never looks at the header.
    return request.headers.get("accept-language")


def add_error_handlers(
    app: ConnexionMiddleware,
    catalogue: ProblemCatalogue,
    settings: Settings,
    allowed_methods: Callable[[str], str | None],
) -> None:
    # async: Connexion would run a plain function in a worker thread, a hop an error does not need.
    async def problem_error(request: ConnexionRequest, exc: ProblemError) -> ConnexionResponse:
        return catalogue.render(exc, accept_language(request))

    async def framework_error(request: ConnexionRequest, exc: HTTPException) -> ConnexionResponse:
        status = exc.status_code
        if status >= 500:
            return await internal_error(request, exc)
        # Any other client error the framework raises breaks the contract of the request.
        # The framework's own texts are English only, so each status gets one of ours, in every language.
        type_name = FRAMEWORK_PROBLEM_TYPES.get(status, "invalid-request")
        message, args = _BAD_REQUEST, {}
        headers = dict(exc.headers or {})
        if status == 401:
            # A request without a token never gets here: the security handler refuses it as
            # missing-credentials itself (`security.bearer_auth`).
            message, args = _BAD_TOKEN, {}
            headers.setdefault("WWW-Authenticate", MISSING_CHALLENGE)
        elif status == 404:
            message, args = _NO_ROUTE, {"path": request.url.path}
        elif status == 405:
            message, args = _NO_METHOD, {"method": request.method}
            # Connexion's router answers from the one route (path and method) it matched first, so its
            # Allow names that route's methods only; the spec knows every method of the path.
            headers["Allow"] = allowed_methods(request.url.path) or headers.get("Allow", "")
        return catalogue.render(
            ProblemError(type_name, message, args=args, headers=headers), accept_language(request)
        )

    async def unavailable(request: ConnexionRequest, exc: DatabaseUnavailable) -> ConnexionResponse:
        record_database_error("unavailable")
        logger.warning("database unavailable (request_id=%s): %s", current_request().request_id, exc)
        retry_after = settings.retry_after_seconds
        return catalogue.render(
            ProblemError(
                "service-unavailable",
                _UNAVAILABLE,
                args={"retry_after": retry_after},
                retry_after=retry_after,
            ),
            accept_language(request),
        )

    async def internal_error(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        ctx = current_request()
        if isinstance(exc, sqlite3.Error | asyncpg.PostgresError):
            record_database_error("error")
        logger.error("unexpected error (request_id=%s)", ctx.request_id, exc_info=exc)
        return catalogue.render(
            ProblemError("internal-error", INTERNAL_ERROR, args={"request_id": ctx.request_id}),
            accept_language(request),
        )

    app.add_error_handler(ProblemError, problem_error)
    app.add_error_handler(ProblemException, framework_error)
    app.add_error_handler(HTTPException, framework_error)
    app.add_error_handler(DatabaseUnavailable, unavailable)
    app.add_error_handler(Exception, internal_error)
