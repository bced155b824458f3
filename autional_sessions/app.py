"""The application: Connexion routes and validates every request against openapi.yaml.

`create_app` does at start-up everything that can be done once (reading the spec and the settings,
building the problem catalogue, the token verifier, the store and its compiled statements, and each
operation's parameter validation and handler call), so the request path only runs the middleware, the
handler and its queries.

The stack is Connexion's own (`ConnexionMiddleware`, its documented way to wrap an ASGI app), with two
of its parts swapped through the `middlewares` list: parameter validation compiled per operation
(`validation.ParameterValidationMiddleware`) and, as the innermost app, a dispatcher that calls each
operation's handler directly (`dispatch.OperationDispatcher`). Connexion's context middleware is left
out: it only feeds the decorators that the dispatcher replaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import functools
import gc
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import asyncpg
from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from connexion.middleware import ConnexionMiddleware, MiddlewarePosition
from connexion.middleware.exceptions import ExceptionMiddleware
from connexion.middleware.lifespan import LifespanMiddleware
from connexion.middleware.response_validation import ResponseValidationMiddleware
from connexion.middleware.routing import RoutingMiddleware
from connexion.middleware.security import SecurityMiddleware
from connexion.middleware.server_error import ServerErrorMiddleware
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from connexion.options import SwaggerUIOptions
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import compile_path

from autional_sessions.auth import NO_TOKEN, TokenVerifier, bearer_security_handler
from autional_sessions.client_address import ClientAddress
from autional_sessions.config import Settings
from autional_sessions.db.errors import DatabaseUnavailable
from autional_sessions.db.queries import SessionQueries
from autional_sessions.db.revocations import SessionRevocations
from autional_sessions.db.store import Store, open_store
from autional_sessions.dispatch import OperationDispatcher
from autional_sessions.i18n import N_
from autional_sessions.log_format import AccessLogMiddleware
from autional_sessions.metrics import (
    MetricsEndpointMiddleware,
    MetricsMiddleware,
    record_database_error,
    record_rate_limit_refusal,
)
from autional_sessions.operations import resolver
from autional_sessions.problems import ProblemCatalogue, ProblemError
from autional_sessions.rate_limits import ClientRateLimitMiddleware, RateLimits, SubjectRateLimitMiddleware
from autional_sessions.request_context import RequestContextMiddleware, current_request
from autional_sessions.request_outcome import RouteTemplates
from autional_sessions.service_routes import ServiceRoutesMiddleware, service_routes
from autional_sessions.spec import HTTP_METHODS, load_spec
from autional_sessions.tracing import Tracing, tracer_provider_from_env
from autional_sessions.validation import ParameterValidationMiddleware

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

logger = logging.getLogger("autional_sessions")

# Connexion and Starlette raise their own exceptions for what the spec rejects before our code runs;
# each HTTP status they use maps to one problem type of our catalogue.
# The Operations probes: never rate limited.
PROBE_PATHS = frozenset({"/healthz", "/readyz"})
# The details of the problems made here, and of the framework's: its own texts are English only.
INTERNAL_ERROR = N_("internal-error", "An unexpected error occurred; quote request_id %(request_id)s")
_UNAVAILABLE = N_("service-unavailable", "The session store is unavailable; retry in %(retry_after)d seconds")
_NO_ROUTE = N_("route-not-found", "No operation of this API has the path %(path)s")
_NO_METHOD = N_("method-not-allowed", "This path does not take %(method)s; see the Allow header")
_BAD_TOKEN = N_("invalid-token", "The token is not acceptable")
_BAD_REQUEST = N_("invalid-request", "The request does not conform to the contract of this operation")
FRAMEWORK_PROBLEM_TYPES = {
    400: "invalid-request",
    401: "invalid-token",
    404: "route-not-found",
    405: "method-not-allowed",
}


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    rate_limits: RateLimits | None = None,
    tracer_provider: TracerProvider | None = None,
) -> ConnexionMiddleware:
    """Build the app. `store` and `rate_limits` let a caller (a test, an embedding) share ones it made.

    With `tracer_provider` (an OpenTelemetry SDK provider: `tracing.tracer_provider_from_env`'s, or a
    test's with an in-memory exporter) every request is a SERVER span and every SQL statement a CLIENT
    span of it, and the app shuts the provider down (flushing its spans) when it stops. Without one, each
    request still gets W3C trace context ids, and no OpenTelemetry code runs."""
    settings = settings or Settings.from_env()
    spec = copy.deepcopy(load_spec())
    catalogue = ProblemCatalogue.from_spec(spec, settings.problem_base_uri, settings.service_name)
    store = store or open_store(settings)
    routes = RouteTemplates(spec)
    client_address = ClientAddress(settings.trusted_proxies)
    tracing: Tracing | None = None
    if tracer_provider is not None:
        from autional_sessions.otel import OtelTracing, TracedStore

        otel_tracing = OtelTracing(tracer_provider, route_of=routes.of, client_of=client_address.of)
        store = TracedStore(store, otel_tracing.tracer)
        tracing = otel_tracing
    sessions = SessionQueries(store)

    async def session_active(user_id: str, session_id: str) -> bool:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
        return await sessions.is_session_active(user_id, session_id, now)

    verifier = TokenVerifier(settings, session_active=session_active)
    if rate_limits is None and settings.rate_limit:
        rate_limits = RateLimits(settings.rate_limit, redis_url=settings.redis_url)

    @contextlib.asynccontextmanager
    async def lifespan(_app: object) -> AsyncIterator[None]:
        yield
        await store.close()
        if rate_limits is not None:
            await rate_limits.close()
        if tracer_provider is not None:
            # Exports what the batch still holds; a blocking call, kept off the event loop.
            await asyncio.to_thread(tracer_provider.shutdown)

    app = ConnexionMiddleware(
        OperationDispatcher(
            {
                "sessions": sessions,
                "revocations": SessionRevocations(store),
                "tenant_claim": settings.tenant_claim,
            }
        ),
        middlewares=middleware_stack(
            validate_responses=settings.validate_responses,
            rate_limits=rate_limits,
            client_address=client_address,
            last_resort=_last_resort(catalogue),
            tracing=tracing,
        ),
        lifespan=lifespan,
        swagger_ui_options=SwaggerUIOptions(
            swagger_ui=True, swagger_ui_path="/ui", spec_path="/openapi.json"
        ),
    )
    app.add_api(
        spec,
        resolver=resolver(),
        strict_validation=True,
        validate_responses=settings.validate_responses,
        security_map={"bearer": bearer_security_handler(verifier)},
    )
    # Added in this order, each lands just inside the one before it at the same position: what observes
    # the request's outcome, outside the exception middleware so that it sees every problem's status.
    # /metrics before the metrics middleware: a scrape is not a request of the API.
    app.add_middleware(MetricsEndpointMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION)
    app.add_middleware(MetricsMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION, route_of=routes.of)
    app.add_middleware(
        AccessLogMiddleware,
        position=MiddlewarePosition.BEFORE_EXCEPTION,
        route_of=routes.of,
        client_of=client_address.of,
    )
    if settings.cors_origins:
        _add_cors(app, spec, settings)
    app.add_middleware(
        ServiceRoutesMiddleware,
        position=MiddlewarePosition.BEFORE_SWAGGER,
        routes=service_routes(spec, problem_base_uri=settings.problem_base_uri),
    )
    _add_error_handlers(app, catalogue, settings, _allowed_methods(spec))
    return app


def _add_cors(app: ConnexionMiddleware, spec: dict, settings: Settings) -> None:
    """CORS for the browser apps of the configured origins. Preflight requests are answered here,
    before routing; tokens travel in the Authorization header, never in cookies, so credentials are
    never allowed (and so never with a wildcard origin)."""
    methods = sorted({m.upper() for path in spec["paths"].values() for m in path if m in HTTP_METHODS})
    app.add_middleware(
        CORSMiddleware,
        position=MiddlewarePosition.BEFORE_EXCEPTION,
        allow_origins=list(settings.cors_origins),
        allow_methods=methods,
        allow_headers=["Authorization", "X-Request-ID", "traceparent", "tracestate", "Accept-Language"],
        expose_headers=[
            "X-Request-ID",
            "traceparent",
            "Retry-After",
            "WWW-Authenticate",
            "RateLimit-Limit",
            "RateLimit-Remaining",
            "RateLimit-Reset",
        ],
        allow_credentials=False,
        max_age=600,
    )


def middleware_stack(
    *,
    validate_responses: bool,
    rate_limits: RateLimits | None = None,
    client_address: ClientAddress | None = None,
    last_resort: Callable[[ConnexionRequest, Exception], Awaitable[ConnexionResponse]] | None = None,
    tracing: Tracing | None = None,
) -> list:
    """Connexion's default middleware stack, with parameter validation compiled per operation in place of
    its request validation, and without its context middleware (it only feeds the decorators that the
    dispatcher replaces). Outside it all, the request's context; with `last_resort`, the server-error
    middleware answers an error that escaped every error handler (one raised inside a handler) with a
    problem too, not Starlette's plain text. With rate limits: per client address before routing, so that a flood of bad
    tokens is limited too, and per token subject right after the token is verified; both inside the
    exception middleware, which renders their 429. `tracing` makes the request's span (W3C trace context
    ids only, by default)."""
    by_address: list = []
    by_subject: list = []
    if rate_limits is not None:
        address = client_address or ClientAddress()
        by_address = [
            functools.partial(
                ClientRateLimitMiddleware,
                limits=rate_limits,
                client_address=address,
                exempt_paths=PROBE_PATHS,
                on_refusal=record_rate_limit_refusal,
            )
        ]
        by_subject = [
            functools.partial(
                SubjectRateLimitMiddleware, limits=rate_limits, on_refusal=record_rate_limit_refusal
            )
        ]
    return [
        # Outermost: even the server-error middleware's answer carries the request's id and trace
        # context, and the request's span covers everything the server does for it.
        functools.partial(RequestContextMiddleware, tracing=tracing) if tracing else RequestContextMiddleware,
        functools.partial(ServerErrorMiddleware, handler=last_resort)
        if last_resort
        else ServerErrorMiddleware,
        ExceptionMiddleware,
        SwaggerUIMiddleware,
        *by_address,
        RoutingMiddleware,
        SecurityMiddleware,
        *by_subject,
        ParameterValidationMiddleware,
        # Response validation checks every response against the spec: on in tests, off in production.
        *([ResponseValidationMiddleware] if validate_responses else []),
        LifespanMiddleware,
    ]


def create_app_from_env() -> ConnexionMiddleware:
    """Factory for uvicorn (`--factory`), so that each worker process builds its own app, pool and, when
    the OTEL_* variables ask for it, tracer provider (whose export thread must belong to the worker)."""
    settings = Settings.from_env()
    app = create_app(settings, tracer_provider=tracer_provider_from_env(settings.service_name))
    # Everything built so far (the spec, the validators, the middleware, the imported modules) lives
    # as long as the process: out of the garbage collector's sight, a full collection no longer walks
    # it, which took the slowest requests' time under load down (see the README's performance section).
    gc.freeze()
    return app


def _allowed_methods(spec: dict) -> Callable[[str], str | None]:
    """The `Allow` value of a request path: the methods the spec gives its path (HEAD with GET)."""
    templates = []
    for template, operations in spec["paths"].items():
        methods = {m.upper() for m in operations if m in HTTP_METHODS}
        if "GET" in methods:
            methods.add("HEAD")
        regex, _, _ = compile_path(template)
        templates.append((regex, ", ".join(sorted(methods))))

    def allowed(path: str) -> str | None:
        return next((methods for regex, methods in templates if regex.match(path)), None)

    return allowed


def _last_resort(
    catalogue: ProblemCatalogue,
) -> Callable[[ConnexionRequest, Exception], Awaitable[ConnexionResponse]]:
    """The answer to an error no handler could turn into a response (a fault inside a handler): the
    internal-error problem, made with as little as can go wrong."""

    async def last_resort(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        request_id = current_request().request_id
        with contextlib.suppress(Exception):  # the log may be what failed
            logger.error("error while handling an error (request_id=%s)", request_id, exc_info=exc)
        return catalogue.render(
            ProblemError("internal-error", INTERNAL_ERROR, args={"request_id": request_id}),
            _accept_language(request),
        )

    return last_resort


def _accept_language(request: ConnexionRequest) -> str | None:
    # Read only when a problem is made: a successful response never looks at the header.
    return request.headers.get("accept-language")


def _add_error_handlers(
    app: ConnexionMiddleware,
    catalogue: ProblemCatalogue,
    settings: Settings,
    allowed_methods: Callable[[str], str | None],
) -> None:
    # async: Connexion would run a plain function in a worker thread, a hop an error does not need.
    async def problem_error(request: ConnexionRequest, exc: ProblemError) -> ConnexionResponse:
        return catalogue.render(exc, _accept_language(request))

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
            if "No authorization token" in (getattr(exc, "detail", None) or ""):
                type_name, message, args = "missing-credentials", NO_TOKEN, {}
            else:
                message, args = _BAD_TOKEN, {}
            headers.setdefault("WWW-Authenticate", 'Bearer realm="autional-sessions"')
        elif status == 404:
            message, args = _NO_ROUTE, {"path": request.url.path}
        elif status == 405:
            message, args = _NO_METHOD, {"method": request.method}
            # Connexion's router answers from the one route (path and method) it matched first, so its
            # Allow names that route's methods only; the spec knows every method of the path.
            headers["Allow"] = allowed_methods(request.url.path) or headers.get("Allow", "")
        return catalogue.render(
            ProblemError(type_name, message, args=args, headers=headers), _accept_language(request)
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
            _accept_language(request),
        )

    async def internal_error(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        ctx = current_request()
        if isinstance(exc, sqlite3.Error | asyncpg.PostgresError):
            record_database_error("error")
        logger.error("unexpected error (request_id=%s)", ctx.request_id, exc_info=exc)
        return catalogue.render(
            ProblemError("internal-error", INTERNAL_ERROR, args={"request_id": ctx.request_id}),
            _accept_language(request),
        )

    app.add_error_handler(ProblemError, problem_error)
    app.add_error_handler(ProblemException, framework_error)
    app.add_error_handler(HTTPException, framework_error)
    app.add_error_handler(DatabaseUnavailable, unavailable)
    app.add_error_handler(Exception, internal_error)
