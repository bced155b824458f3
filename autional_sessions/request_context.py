"""Per-request identity (request id, trace id, path), set by the outermost middleware.

It lives in a context variable so that the problem factory can stamp every error response with the
request's id, whether the error comes from a handler or from Connexion's own middleware.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# What we accept from a caller as its request id: short and free of anything a log line or a header
# could be abused with (no spaces, quotes, newlines).
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# W3C Trace Context, version 00: an all-zero trace id or parent id is invalid.
_TRACEPARENT = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")


_STAMPED = frozenset({b"x-request-id", b"x-content-type-options"})


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    path: str
    trace_id: str | None = None


_current: ContextVar[RequestContext | None] = ContextVar("autional_request", default=None)


def active_request() -> RequestContext | None:
    """The running request's context, or None outside any request."""
    return _current.get()


def current_request() -> RequestContext:
    """The running request's context, or a fresh one outside any request (e.g. in a unit test)."""
    ctx = _current.get()
    return ctx if ctx is not None else RequestContext(request_id=new_request_id(), path="/")


def new_request_id() -> str:
    return f"req_{uuid.uuid4()}"


class RequestContextMiddleware:
    """Outermost middleware: names the request, and marks every response with that name, no-store and
    nosniff."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied_id = trace_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                supplied_id = value.decode("latin-1")
            elif name == b"traceparent":
                trace_id = value.decode("latin-1").strip().lower()
        request_id = (
            supplied_id if supplied_id and _SANE_REQUEST_ID.fullmatch(supplied_id) else new_request_id()
        )
        if trace_id is not None and not _TRACEPARENT.fullmatch(trace_id):
            trace_id = None
        token = _current.set(RequestContext(request_id=request_id, path=scope["path"], trace_id=trace_id))

        stamps = [
            (b"x-request-id", request_id.encode("latin-1")),
            # No browser may guess another type than the one declared (a JSON body read as HTML).
            (b"x-content-type-options", b"nosniff"),
        ]

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
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
            await send(message)

        try:
            await self.app(scope, receive, send_marked)
        finally:
            _current.reset(token)
