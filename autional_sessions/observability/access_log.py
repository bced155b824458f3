"""One access line per request, on the `autional_sessions.access` logger (formatted by `log_format`).

The uvicorn server's own access log is not used: it shows the raw path (user ids) and the query string.
`AccessLog` writes the access line instead, naming the request by its route template, with the request
id that its response carries and that its error responses quote, so the three can be joined. The request
context middleware calls it when each request is over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.types import Scope

from autional_sessions.observability.log_format import ACCESS_LOGGER, json_line
from autional_sessions.observability.request_context import RequestContext


class AccessLog:
    """One INFO line per http request on the `autional_sessions.access` logger, with its request id, route
    template, method, status, duration, trace id, span id and client address; never its path, query string or
    headers, which carry user ids, session ids and tokens."""

    def __init__(self, *, client_of: Callable[[Scope], str]) -> None:
        self.client_of = client_of
        self.logger = logging.getLogger(ACCESS_LOGGER)

    def record(self, scope: Scope, context: RequestContext, route: str, status: int, seconds: float) -> None:
        """A finished request, as the request context middleware reports it (`request_context.Recorder`)."""
        if not self.logger.isEnabledFor(logging.INFO):
            return
        method, span = scope["method"], context.span
        # The record made directly, its fields set at once and its JSON line made by one call to orjson: no
        # `extra` mapping checked and copied key by key, no formatter looking through the record's
        # attributes. Writing happens off the event loop (log_format.QueuedStreamHandler).
        record = self.logger.makeRecord(
            ACCESS_LOGGER, logging.INFO, __file__, 0, "%s %s %s", (method, route, status), None
        )
        json_line(
            record,
            {
                "request_id": context.request_id,
                "route": route,
                "method": method,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                # The same trace context as the response's traceparent and its problem body.
                "trace_id": span.traceparent if span else None,
                "span_id": span.span_id if span else None,
                "client_ip": self.client_of(scope),
            },
        )
        self.logger.handle(record)
