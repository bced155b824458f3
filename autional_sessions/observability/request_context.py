"""Per-request identity (request id, path, and this service's span of the request in W3C Trace Context),
set by the outermost middleware, which is also the one layer that watches every request.

The identity lives in a context variable so that the problem factory can stamp every error response with
the request's id and trace context, whether the error comes from a handler or from Connexion's own
middleware.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from autional_sessions.observability.request_outcome import UNMATCHED, expose_routing
from autional_sessions.observability.tracing import (
    IdTracing,
    ServerSpan,
    Tracing,
    new_uuid4,
    parse_traceparent,
    parse_tracestate,
)

# What we accept from a caller as its request id: short and free of anything a log line or a header
# could be abused with (no spaces, quotes, newlines).
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

_STAMPED = frozenset({b"x-request-id", b"x-content-type-options", b"traceparent"})


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    path: str
    # This service's span of the request; None outside a request.
    span: ServerSpan | None = None


_current: ContextVar[RequestContext | None] = ContextVar("autional_request", default=None)


def active_request() -> RequestContext | None:
    """The running request's context, or None outside any request."""
    return _current.get()


def current_request() -> RequestContext:
    """The running request's context, or a fresh one outside any request (e.g. in a unit test)."""
    ctx = _current.get()
    return ctx if ctx is not None else RequestContext(request_id=new_request_id(), path="/")


def new_request_id() -> str:
    return f"req_{new_uuid4()}"


# What records a request once it is over (the metrics, the access log): called with its scope, its
# context, its route template, its status and its duration in seconds.
Recorder = Callable[[Scope, RequestContext, str, int, float], None]


class RequestContextMiddleware:
    """Outermost middleware, and the one layer that watches requests: names the request, starts its span
    (continuing the caller's trace), marks every response with that name, the span's `traceparent`,
    no-store and nosniff, and once the request is over ends the span and hands its outcome to each of
    `recorders` (the metrics, the access log). One timer, one pass over the response's headers, one
    `send` wrapper for all of them; its status is the one the client got, a problem rendered by the
    exception middleware or the server-error middleware's answer included. Requests to `unrecorded_paths`
    (a metrics scrape) are named and marked, not recorded.

    The span's context leaves the service in a `traceparent` response header. W3C Trace Context Level 2
    defines no response header: `traceresponse` was taken out of it (w3c/trace-context#484) and is a
    Level 3 draft, so no client library reads it yet. A `traceparent` in a response has the header's one
    standard format and names this service's span (its parent is the caller's), which is what a caller
    needs to find the server side of its request in a trace."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracing: Tracing | None = None,
        route_of: Callable[[Scope], str] = lambda _scope: UNMATCHED,
        recorders: Sequence[Recorder] = (),
        unrecorded_paths: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.tracing = tracing or IdTracing()
        self.route_of = route_of
        self.recorders = tuple(recorders)
        self.unrecorded_paths = unrecorded_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        supplied_id = traceparent = None
        tracestate: list[str] = []
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                supplied_id = value.decode("latin-1")
            elif name == b"traceparent":
                # Two traceparent headers are one invalid value (Level 1 §3.2: a single value).
                traceparent = value.decode("latin-1") if traceparent is None else ""
            elif name == b"tracestate":
                tracestate.append(value.decode("latin-1"))
        request_id = (
            supplied_id if supplied_id and _SANE_REQUEST_ID.fullmatch(supplied_id) else new_request_id()
        )
        parent = parse_traceparent(traceparent) if traceparent else None
        # The route is read from this very scope when the request is over.
        expose_routing(scope)
        # tracestate is read only along a valid traceparent (Level 1 §3.3.1.1).
        span = self.tracing.start(
            scope, parent, parse_tracestate(tracestate) if parent and tracestate else ()
        )
        context = RequestContext(request_id=request_id, path=scope["path"], span=span)
        token = _current.set(context)

        stamps = [
            (b"x-request-id", request_id.encode("latin-1")),
            (b"traceparent", span.traceparent.encode("latin-1")),
            # No browser may guess another type than the one declared (a JSON body read as HTML).
            (b"x-content-type-options", b"nosniff"),
        ]

        # What the client gets when no response starts: uvicorn answers 500 for an app that sent none.
        status, error = 500, None

        # A plain function that hands back `send`'s own awaitable: no coroutine of its own, on each of a
        # response's messages.
        def send_marked(message: Message) -> Awaitable[None]:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # One pass over the raw headers, replacing any of ours an inner layer set already.
                kept = []
                cacheable = False
                for name, value in message.get("headers", ()):
                    lowered = name.lower()
                    if lowered == b"cache-control":
                        # Only the static docs pages say they may be cached; everything else is no-store.
                        cacheable = value.startswith(b"public")
                        if not cacheable:
                            continue
                    if lowered not in _STAMPED:
                        kept.append((name, value))
                message["headers"] = kept + stamps + ([] if cacheable else [(b"cache-control", b"no-store")])
            return send(message)

        try:
            await self.app(scope, receive, send_marked)
        except BaseException as exc:
            # The server turns an exception that escapes the app into a 500 (or a cut response, if one
            # had started): either way the request failed.
            status, error = 500, exc
            raise
        finally:
            try:
                self.tracing.end(span, scope, status, error)
                if self.recorders and scope["path"] not in self.unrecorded_paths:
                    seconds = time.perf_counter() - started
                    route = self.route_of(scope)
                    for record in self.recorders:
                        record(scope, context, route, status, seconds)
            finally:
                _current.reset(token)
