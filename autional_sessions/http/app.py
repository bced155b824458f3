"""The application: Connexion routes and validates every request against openapi.yaml.

`create_app` does at start-up everything that can be done once (reading the spec and the settings,
building the problem catalogue, the token verifier, the store and its compiled statements, and each
operation's parameter validation and handler call), so the request path only runs the middleware, the
handler and its queries.

The stack is Connexion's own (`ConnexionMiddleware`, its documented way to wrap an ASGI app), given whole,
outermost first, as its `middlewares` list by `middleware_stack`, the one place the order of the layers
is set. Two of Connexion's parts are swapped there: parameter validation compiled per operation
(`parameter_validation.ParameterValidationMiddleware`) and, as the innermost app, a dispatcher that calls
each operation's handler directly (`dispatch.OperationDispatcher`). Connexion's context middleware is left
out: it only feeds the decorators that the dispatcher replaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from connexion.middleware import ConnexionMiddleware
from connexion.middleware.exceptions import ExceptionMiddleware
from connexion.middleware.lifespan import LifespanMiddleware
from connexion.middleware.response_validation import ResponseValidationMiddleware
from connexion.middleware.routing import RoutingMiddleware
from connexion.middleware.security import SecurityMiddleware
from connexion.middleware.server_error import ServerErrorMiddleware
from connexion.options import SwaggerUIOptions
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route
from starlette.types import ASGIApp, Scope

from autional_sessions.config import Settings
from autional_sessions.db.clock import utc_now
from autional_sessions.db.queries import SessionQueries
from autional_sessions.db.revocations import SessionRevocations
from autional_sessions.db.store import Store, open_store
from autional_sessions.http.client_address import ClientAddress
from autional_sessions.http.dispatch import OperationDispatcher
from autional_sessions.http.docs_ui import SwaggerUIPassThrough
from autional_sessions.http.error_handlers import add_error_handlers, allowed_methods, last_resort
from autional_sessions.http.handler_resolver import resolver
from autional_sessions.http.parameter_validation import ParameterValidationMiddleware
from autional_sessions.http.rate_limits import ClientRateLimitMiddleware, SubjectRateLimitMiddleware
from autional_sessions.http.service_routes import ServiceRoutesMiddleware, service_routes
from autional_sessions.observability.access_log import AccessLog
from autional_sessions.observability.log_format import drain_logs
from autional_sessions.observability.metrics import (
    METRICS_PATH,
    MetricsEndpointMiddleware,
    default_metrics,
    metrics_app,
    observe_pool_wait,
    record_rate_limit_refusal,
)
from autional_sessions.observability.request_context import Recorder, RequestContextMiddleware
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
    metrics = default_metrics() if settings.metrics else None

    async def session_active(user_id: str, session_id: str) -> bool:
        return await sessions.is_session_active(user_id, session_id, utc_now())

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
            last_resort=last_resort(catalogue),
            tracing=tracing,
            route_of=routes.of,
            recorders=[*([metrics.record] if metrics else []), AccessLog(client_of=client_address.of).record],
            metrics_endpoint=metrics_app() if metrics else None,
            cors=_cors_options(spec, settings) if settings.cors_origins else None,
            service_routes=service_routes(spec, problem_base_uri=settings.problem_base_uri),
            rate_limits=rate_limits,
            client_address=client_address,
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
    add_error_handlers(app, catalogue, settings, allowed_methods(spec))
    return app


def _cors_options(spec: dict, settings: Settings) -> dict[str, Any]:
    """CORS for the browser apps of the configured origins. Preflight requests are answered before
    routing; tokens travel in the Authorization header, never in cookies, so credentials are never
    allowed (and so never with a wildcard origin)."""
    methods = sorted({m.upper() for path in spec["paths"].values() for m in path if m in HTTP_METHODS})
    return {
        "allow_origins": list(settings.cors_origins),
        "allow_methods": methods,
        "allow_headers": ["Authorization", "X-Request-ID", "traceparent", "tracestate", "Accept-Language"],
        "expose_headers": [
            "X-Request-ID",
            "traceparent",
            "Retry-After",
            "WWW-Authenticate",
            "RateLimit-Limit",
            "RateLimit-Remaining",
            "RateLimit-Reset",
        ],
        "allow_credentials": False,
        "max_age": 600,
    }


def middleware_stack(
    *,
    validate_responses: bool,
    last_resort: Callable[[ConnexionRequest, Exception], Awaitable[ConnexionResponse]] | None = None,
    tracing: Tracing | None = None,
    route_of: Callable[[Scope], str] | None = None,
    recorders: Sequence[Recorder] = (),
    metrics_endpoint: ASGIApp | None = None,
    cors: Mapping[str, Any] | None = None,
    service_routes: list[Route] | None = None,
    rate_limits: RateLimits | None = None,
    client_address: ClientAddress | None = None,
) -> list:
    """Every layer of the app, outermost first, as `ConnexionMiddleware(middlewares=...)` takes them: the
    one place their order is set.

    Connexion's default stack, with parameter validation compiled per operation in place of its request
    validation, and without its context middleware (it only feeds the decorators that the dispatcher
    replaces); around it, the request context middleware, the one layer that watches requests (ids and
    trace context, the response stamps, the metrics and the access log through `recorders`), outermost so
    that even the server-error middleware's answer is stamped and recorded with the status the client got.
    With `last_resort`, the server-error middleware answers an error that escaped every error handler (one
    raised inside a handler) with a problem too, not Starlette's plain text. /metrics is answered inside
    the server-error middleware and outside the exception middleware, and not recorded (a scrape is not a
    request of the API); CORS preflights before routing; the problem pages and the YAML spec inside the
    exception middleware, so that a wrong method on them is a problem like any other. With rate limits:
    each request's budget opened before routing, its address and its token's subject counted right after
    the token is verified; both inside the exception middleware, which renders their 429."""
    observer: dict[str, Any] = {}
    if tracing is not None:
        observer["tracing"] = tracing
    if recorders:
        observer.update(route_of=route_of, recorders=recorders)
        if metrics_endpoint is not None:
            observer["unrecorded_paths"] = frozenset({METRICS_PATH})
    by_address: list = []
    by_subject: list = []
    if rate_limits is not None:
        by_address = [
            functools.partial(
                ClientRateLimitMiddleware,
                limits=rate_limits,
                client_address=client_address or ClientAddress(),
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
        functools.partial(RequestContextMiddleware, **observer) if observer else RequestContextMiddleware,
        functools.partial(ServerErrorMiddleware, handler=last_resort)
        if last_resort
        else ServerErrorMiddleware,
        *(
            [functools.partial(MetricsEndpointMiddleware, endpoint=metrics_endpoint)]
            if metrics_endpoint
            else []
        ),
        *([functools.partial(CORSMiddleware, **cors)] if cors else []),
        ExceptionMiddleware,
        *([functools.partial(ServiceRoutesMiddleware, routes=service_routes)] if service_routes else []),
        SwaggerUIPassThrough,
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
