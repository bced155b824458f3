"""Prometheus metrics: requests, their latency, database errors and pool waits, rate-limit refusals.

Label values come from short fixed sets only (route templates, methods, statuses, error kinds), never from
what a request carries: a user id as a label value would both leak it to whoever reads the metrics and
make a new series for every user.

Under `serve` with several workers, the metrics are shared through prometheus-client's multiprocess
mode (see `metrics_dir`): every worker records as usual, and `/metrics` adds up all of them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, make_asgi_app
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Receive, Scope, Send

from autional_sessions.observability.metrics_dir import ENV_VAR

# From a request served out of memory (1 ms) to one that went badly wrong (10 s, past any sane timeout).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DATABASE_ERROR_KINDS = ("unavailable", "error")
RATE_LIMIT_KINDS = ("ip", "sub")
# A server passes on any method token a client sends: the others share one label value.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})
OTHER_METHOD = "other"
METRICS_PATH = "/metrics"


class Metrics:
    """The service's metrics, registered in `registry`: a test gives each its own registry, the service
    uses `default_metrics()`."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self._requests = Counter(
            "autional_sessions_http_requests",
            "HTTP requests, by route template, method and status",
            ["route", "method", "status"],
            registry=registry,
        )
        self._latency = Histogram(
            "autional_sessions_http_request_duration_seconds",
            "Time from a request's arrival to its response's end, by route template and method",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._database_errors = Counter(
            "autional_sessions_database_errors",
            "Database errors, by kind (unavailable: no connection; error: any other)",
            ["kind"],
            registry=registry,
        )
        self._pool_wait = Histogram(
            "autional_sessions_database_pool_wait_seconds",
            "Time a request waited for a database connection from the pool",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._rate_limit_refusals = Counter(
            "autional_sessions_rate_limit_refusals",
            "Requests refused by a rate limit, by kind (ip: per client address; sub: per token subject)",
            ["kind"],
            registry=registry,
        )
        self._request_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        # Known kinds show as 0 from the start, so that a query or an alert on them finds a series.
        for kind in DATABASE_ERROR_KINDS:
            self._database_errors.labels(kind)
        for kind in RATE_LIMIT_KINDS:
            self._rate_limit_refusals.labels(kind)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one finished request; `route` is its template (or "unmatched"), never its path."""
        method = method if method in _METHODS else OTHER_METHOD
        key = (route, method, status)
        series = self._request_series.get(key)
        if series is None:
            # Looked up once per label values (a short fixed set), not on every request.
            series = self._request_series[key] = (
                self._requests.labels(route, method, str(status)),
                self._latency.labels(route, method),
            )
        series[0].inc()
        series[1].observe(seconds)

    def record(self, scope: Scope, _context: object, route: str, status: int, seconds: float) -> None:
        """A finished request, as the request context middleware reports it (`request_context.Recorder`)."""
        self.observe_request(route, scope["method"], status, seconds)

    def record_database_error(self, kind: str) -> None:
        """Count one database error of `kind`, one of DATABASE_ERROR_KINDS."""
        self._database_errors.labels(kind).inc()

    def observe_pool_wait(self, seconds: float) -> None:
        self._pool_wait.observe(seconds)

    def record_rate_limit_refusal(self, kind: str) -> None:
        """Count one refused request of `kind`, one of RATE_LIMIT_KINDS."""
        self._rate_limit_refusals.labels(kind).inc()


@functools.cache
def default_metrics() -> Metrics:
    """The process's metrics, in prometheus-client's default registry; made on first use, so importing
    this module registers nothing."""
    return Metrics(REGISTRY)


def record_database_error(kind: str) -> None:
    default_metrics().record_database_error(kind)


def observe_pool_wait(seconds: float) -> None:
    default_metrics().observe_pool_wait(seconds)


def record_rate_limit_refusal(kind: str) -> None:
    default_metrics().record_rate_limit_refusal(kind)


def metrics_app(registry: CollectorRegistry | None = None) -> ASGIApp:
    """An ASGI app answering with the metrics in the Prometheus text format: those of `registry`; else
    those of all worker processes, under `serve`'s multiprocess mode; else those of this process."""
    if registry is None:
        registry = _multiprocess_registry() if os.environ.get(ENV_VAR) else REGISTRY
    return make_asgi_app(registry)


def _multiprocess_registry() -> CollectorRegistry:
    # A registry of its own that only reads the workers' files: the default registry holds this process's
    # values alone, which the files already count.
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


class MetricsEndpointMiddleware:
    """Answers GET on `path` with `metrics_app()`, and passes every other request on: the way to serve
    /metrics beside a Connexion app, whose routes all come from the spec."""

    def __init__(self, app: ASGIApp, *, path: str = METRICS_PATH, endpoint: ASGIApp | None = None) -> None:
        self.app = app
        self.path = path
        self.endpoint = endpoint or metrics_app()

    # A plain function that hands back the awaitable of the app it picks: no coroutine of this layer's
    # own on every request it passes on.
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] == "http" and scope["path"] == self.path and scope["method"] == "GET":
            return self.endpoint(scope, receive, send)
        return self.app(scope, receive, send)
