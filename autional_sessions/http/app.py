"""The application: Connexion routes and validates every request against openapi.yaml.

`create_app` does at start-up everything that can be done once (reading the spec and the settings,
building the problem catalogue, the token verifier, the store and its compiled statements, and each
operation's parameter validation and handler call), so the request path only runs the middleware, the
handler and its queries.

The stack is Connexion's own (`ConnexionMiddleware`, its documented way to wrap an ASGI app), with two
of its parts swapped through the `middlewares` list: parameter validation compiled per operation
(`parameter_validation.ParameterValidationMiddleware`) and, as the innermost app, a dispatcher that calls each
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
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

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
from starlette.middleware.cors import CORSMiddleware

from autional_sessions.config import Settings
from autional_sessions.db.queries import SessionQueries
from autional_sessions.db.revocations import SessionRevocations
from autional_sessions.db.store import Store, open_store
from autional_sessions.http.client_address import ClientAddress
from autional_sessions.http.dispatch import OperationDispatcher
from autional_sessions.http.error_handlers import add_error_handlers, allowed_methods, last_resort
from autional_sessions.http.handler_resolver import resolver
from autional_sessions.http.parameter_validation import ParameterValidationMiddleware
from autional_sessions.http.rate_limits import ClientRateLimitMiddleware, SubjectRateLimitMiddleware
from autional_sessions.http.service_routes import ServiceRoutesMiddleware, service_routes
from autional_sessions.observability.access_log import AccessLogMiddleware
from autional_sessions.observability.log_format import drain_logs
from autional_sessions.observability.metrics import (
    MetricsEndpointMiddleware,
    MetricsMiddleware,
    observe_pool_wait,
    record_rate_limit_refusal,
)
from autional_sessions.observability.request_context import RequestContextMiddleware
from autional_sessions.observability.request_outcome import RouteTemplates
from autional_sessions.observability.tracing import Tracing, tracer_provider_for
from autional_sessions.problems.factory import ProblemCatalogue
from autional_sessions.security.bearer_auth import TokenVerifier, bearer_security_handler
from autional_sessions.security.rate_limiter import RateLimits
from autional_sessions.spec import HTTP_METHODS, load_spec

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

logger = logging.getLogger("autional_sessions")

# The Operations probes: never rate limited.
PROBE_PATHS = frozenset({"/healthz", "/readyz"})


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    rate_limits: RateLimits | None = None,
    tracer_provider: TracerProvider | None = None,
) -> ConnexionMiddleware:
    """Build the app. `store` and `rate_limits` let a caller (a test, an embedding) share ones it made.

    With `tracer_provider` (an OpenTelemetry SDK provider: `tracing.tracer_provider_for`'s, or a
    test's with an in-memory exporter) every request is a SERVER span and every SQL statement a CLIENT
    span of it, and the app shuts the provider down (flushing its spans) when it stops. Without one, each
    request still gets W3C trace context ids, and no OpenTelemetry code runs."""
    settings = settings or Settings.from_env()
    spec = copy.deepcopy(load_spec())
    catalogue = ProblemCatalogue.from_spec(spec, settings.problem_base_uri, settings.service_name)
    store = store or open_store(settings, on_pool_wait=observe_pool_wait)
    routes = RouteTemplates(spec)
    client_address = ClientAddress(settings.trusted_proxies)
    tracing: Tracing | None = None
    if tracer_provider is not None:
        from autional_sessions.observability.otel import OtelTracing, TracedStore

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
        # Every request is over: what the log queue holds is written, and what comes after at once.
        drain_logs()

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
            last_resort=last_resort(catalogue),
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
    add_error_handlers(app, catalogue, settings, allowed_methods(spec))
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
    app = create_app(settings, tracer_provider=tracer_provider_for(settings))
    # Everything built so far (the spec, the validators, the middleware, the imported modules) lives
    # as long as the process: out of the garbage collector's sight, a full collection no longer walks
    # it, which took the slowest requests' time under load down (see the README's performance section).
    gc.freeze()
    return app
