"""One access line per request, on the `autional_sessions.access` logger (formatted by `log_format`).

The uvicorn server's own access log is not used: it shows the raw path (user ids) and the query string.
`AccessLog` writes the access line instead, naming the request by its route template, with the request
id that its response carries and that its error responses quote, so the three can be joined. The request
context middleware calls it when each request is over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import orjson
from starlette.types import Scope

from autional_sessions.observability.log_format import (
    ACCESS_LOGGER,
    json_line,
    json_line_sink,
    rfc3339,
)
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
        span = context.span
        # The line's values, as they are when the request ends (strings and numbers, which do not change).
        fields = (
            time.time(),
            scope["method"],
            route,
            status,
            seconds,
            context.request_id,
            span.traceparent if span else None,
            span.span_id if span else None,
            self.client_of(scope),
        )
        # Under `serve` the values go to the writing thread as they are, which makes the line there in
        # the loop over its batch: no LogRecord made, filtered and formatted, and no dict or JSON made on
        # the event loop. (A LogRecord's making alone cost more than the whole line in the profile, and
        # the line made on the loop, between requests that leave the processor's caches cold, cost twice
        # what it does in the thread's loop.)
        # Looked up for every line (a walk of two loggers): a handler or filter added since, anywhere on
        # the way, sends the line the usual way.
        sink = json_line_sink(self.logger)
        if sink is not None and sink.write_json_line_later(_line, fields):
            return
        # Any other configuration: a record, made directly with its JSON line (log_format.json_line), which
        # the usual handlers write (and redact).
        entry = _entry(fields)
        record = self.logger.makeRecord(
            ACCESS_LOGGER, logging.INFO, __file__, 0, "%s %s %s", (entry["method"], route, status), None
        )
        json_line(record, {name: entry[name] for name in _FIELDS})
        self.logger.handle(record)


AccessFields = tuple[float, str, str, int, float, str, str | None, str | None, str]


def _entry(fields: AccessFields) -> dict[str, object]:
    """The line JsonFormatter would write from a record, as one dict for one orjson call."""
    logged_at, method, route, status, seconds, request_id, trace_id, span_id, client_ip = fields
    return {
        "time": rfc3339(logged_at),
        "level": "INFO",
        "logger": ACCESS_LOGGER,
        "message": f"{method} {route} {status}",
        "request_id": request_id,
        "route": route,
        "method": method,
        "status": status,
        "duration_ms": round(seconds * 1e6) / 1000,  # to the microsecond, as round(ms, 3) but faster
        # The same trace context as the response's traceparent and its problem body.
        "trace_id": trace_id,
        "span_id": span_id,
        "client_ip": client_ip,
    }


def _line(fields: AccessFields) -> str:
    return orjson.dumps(_entry(fields), default=str).decode()


# The access line's own fields, after the four every JSON line has.
_FIELDS = (
    "request_id",
    "route",
    "method",
    "status",
    "duration_ms",
    "trace_id",
    "span_id",
    "client_ip",
)
