"""W3C Trace Context for every request, and the OpenTelemetry tracer provider when export is on.

Each request gets a span of this service: a new span id, in the caller's trace when its `traceparent` is
valid (W3C Trace Context Level 1, §3.2 and §4.3), in a new trace otherwise. The span's ids are what the
problem bodies (`trace_id` in `traceparent` form, `span_id`), the `traceparent` response header and the log
lines give, so the three can be joined with the caller's trace.

Without OpenTelemetry (no `OTEL_*` variable asks for it: `Settings.otel_export`) `IdTracing` only makes ids, from a per-process
`random.Random`: no SDK is imported and a request pays for two random numbers and one string. With it,
`autional_sessions.observability.otel` (imported only then) makes the spans and exports them, and the ids are theirs.

One parser serves both: OpenTelemetry's `TraceContextTextMapPropagator` would need its context objects on
every request, which the off path must not pay for; the rules below are the same Level 1 rules.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

from starlette.types import Scope

from autional_sessions.config import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

# version "-" trace-id "-" parent-id "-" trace-flags, lower-case hex only (HEXDIGLC): an upper-case
# value is invalid, not something to fix up.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_VERSION_00_LENGTH = 55
_ZERO_TRACE_ID = "0" * 32
_ZERO_PARENT_ID = "0" * 16
# A tracestate list member (Level 1 §3.3.1.3): a simple or multi-tenant key, "=", a value of printable
# ASCII without "," and "=" that does not end in a space.
_TRACESTATE_MEMBER = re.compile(
    r"(?:[a-z0-9][_0-9a-z*/-]{0,240}@[a-z][_0-9a-z*/-]{0,13}|[a-z][_0-9a-z*/-]{0,255})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)
_TRACESTATE_MAX_MEMBERS = 32

# Trace ids and span ids need to be unique, not secret (Level 1 §6.1 asks only that they carry no
# information): a Mersenne Twister seeded from os.urandom, as OpenTelemetry's own RandomIdGenerator does,
# at a fraction of a SystemRandom's cost. A process forked after import reseeds, so that no two workers
# repeat each other's ids (uvicorn spawns its workers, which import afresh; other servers fork).
_ids = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ids.seed)


class TraceParent(NamedTuple):
    """A valid incoming `traceparent`: the caller's trace, its span, and its sampled flag."""

    trace_id: str
    parent_id: str
    sampled: bool


TraceState = tuple[tuple[str, str], ...]


def parse_traceparent(value: str) -> TraceParent | None:
    """The caller's context from a `traceparent` value, or None when it is invalid (and a new trace
    starts). A future version (01 to fe) is read by the version 00 layout, as Level 1 §3.2.4 asks: at least
    55 characters, and a "-" after them if there are more; only its sampled flag is known."""
    value = value.strip(" \t")
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace_id, parent_id, flags = match.groups()
    if version == "ff":
        return None
    if len(value) != _VERSION_00_LENGTH and (version == "00" or value[_VERSION_00_LENGTH] != "-"):
        return None
    if trace_id == _ZERO_TRACE_ID or parent_id == _ZERO_PARENT_ID:
        return None
    return TraceParent(trace_id, parent_id, bool(int(flags, 16) & 0x01))


def parse_tracestate(values: Sequence[str]) -> TraceState:
    """The list members of the `tracestate` header lines (combined as one list, Level 1 §3.3.1.1), or ()
    when the list is invalid: more than 32 members, a malformed one, or a key twice."""
    members: list[tuple[str, str]] = []
    for item in ",".join(values).split(","):
        item = item.strip(" \t")
        if not item:
            continue  # empty members are allowed, and dropped
        if not _TRACESTATE_MEMBER.fullmatch(item):
            return ()
        key, _, member_value = item.partition("=")
        members.append((key, member_value))
    if len(members) > _TRACESTATE_MAX_MEMBERS or len({key for key, _ in members}) != len(members):
        return ()
    return tuple(members)


def new_uuid4() -> str:
    """A random UUID (version 4) from the same generator: a request id needs to be unique, not secret, and
    `uuid.uuid4()` (os.urandom and the UUID class) cost four times as much."""
    value = _ids.getrandbits(128) & ~(0xF000 << 64) | (0x4000 << 64)  # version 4
    value = value & ~(0xC000 << 48) | (0x8000 << 48)  # the RFC 4122 variant
    hex_ = f"{value:032x}"
    return f"{hex_[:8]}-{hex_[8:12]}-{hex_[12:16]}-{hex_[16:20]}-{hex_[20:]}"


def new_trace_id() -> str:
    while True:
        value = _ids.getrandbits(128)
        if value:  # all zeros is the one invalid trace id
            return f"{value:032x}"


def new_span_id() -> str:
    while True:
        value = _ids.getrandbits(64)
        if value:
            return f"{value:016x}"


class ServerSpan:
    """This service's span of one request: its ids, as the response header, the problem bodies and the
    log lines give them. `handle` is the tracer's own (the OpenTelemetry span), when there is one."""

    __slots__ = ("handle", "parent_id", "sampled", "span_id", "trace_id", "traceparent", "tracestate")

    def __init__(
        self,
        trace_id: str,
        span_id: str,
        *,
        parent_id: str | None,
        sampled: bool,
        tracestate: TraceState = (),
        handle: object = None,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.sampled = sampled
        self.tracestate = tracestate
        self.handle = handle
        # Version 00 whatever version came in: the one this service knows how to write.
        self.traceparent = f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"


class Tracing(Protocol):
    """Starts and ends the span of each request; `RequestContextMiddleware` calls it."""

    def start(self, scope: Scope, parent: TraceParent | None, tracestate: TraceState) -> ServerSpan: ...

    def end(self, span: ServerSpan, scope: Scope, status: int, error: BaseException | None) -> None: ...


class IdTracing:
    """Trace context without recording: a new span id in the caller's trace (its sampled flag kept, since
    nothing here decides otherwise), or a new trace, not sampled."""

    def start(self, scope: Scope, parent: TraceParent | None, tracestate: TraceState) -> ServerSpan:
        if parent is None:
            return ServerSpan(new_trace_id(), new_span_id(), parent_id=None, sampled=False)
        return ServerSpan(
            parent.trace_id,
            new_span_id(),
            parent_id=parent.parent_id,
            sampled=parent.sampled,
            tracestate=tracestate,
        )

    def end(self, span: ServerSpan, scope: Scope, status: int, error: BaseException | None) -> None:
        return None


def tracer_provider_for(settings: Settings) -> TracerProvider | None:
    """An OpenTelemetry SDK tracer provider exporting over OTLP/HTTP, when the settings turn export on
    (`Settings.otel_export`); None otherwise, without importing the SDK. Call it in the process that
    serves (a worker), since its batch processor runs a thread of that process."""
    if not settings.otel_export:
        return None
    from autional_sessions.observability.otel import otlp_tracer_provider

    # The SDK reads its own variables (endpoint, headers, sampler, service name and resource attributes).
    return otlp_tracer_provider(settings.service_name, os.environ)
