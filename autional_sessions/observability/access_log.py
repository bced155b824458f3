"""One access line per request, on the `autional_sessions.access` logger (formatted by `log_format`).

The uvicorn server's own access log is not used: it shows the raw path (user ids) and the query string.
`AccessLogMiddleware` writes the access line instead, naming the request by its route template, with the
request id that its response carries and that its error responses quote, so the three can be joined.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.types import ASGIApp, Scope

from autional_sessions.observability.log_format import ACCESS_LOGGER
from autional_sessions.observability.request_context import active_request
from autional_sessions.observability.request_outcome import ObservedMiddleware


class AccessLogMiddleware(ObservedMiddleware):
    """One INFO line per http request on the `autional_sessions.access` logger, with its request id, route
    template, method, status, duration, trace id, span id and client address; never its path, query string or
    headers, which carry user ids, session ids and tokens. It goes inside `RequestContextMiddleware`
    (whose request id it logs) and outside Connexion's exception middleware (whose status it logs)."""

    def __init__(
        self, app: ASGIApp, *, route_of: Callable[[Scope], str], client_of: Callable[[Scope], str]
    ) -> None:
        super().__init__(app)
        self.route_of = route_of
        self.client_of = client_of
        self.logger = logging.getLogger(ACCESS_LOGGER)

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        context = active_request()
        span = context.span if context else None
        route, method = self.route_of(scope), scope["method"]
        # The record made directly, its fields set at once: no `extra` mapping checked and copied key by
        # key. Formatting (orjson) and writing happen off the event loop (log_format.QueuedStreamHandler).
        record = self.logger.makeRecord(
            ACCESS_LOGGER, logging.INFO, __file__, 0, "%s %s %s", (method, route, status), None
        )
        record.__dict__.update(
            request_id=context.request_id if context else None,
            route=route,
            method=method,
            status=status,
            duration_ms=round(seconds * 1000, 3),
            # The same trace context as the response's traceparent and its problem body.
            trace_id=span.traceparent if span else None,
            span_id=span.span_id if span else None,
            client_ip=self.client_of(scope),
        )
        self.logger.handle(record)
