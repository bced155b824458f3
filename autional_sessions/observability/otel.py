"""OpenTelemetry spans of the service: one SERVER span per request, one CLIENT span per SQL statement.

Imported only when tracing is on (`tracing.tracer_provider_for`, or a tracer provider handed to
`create_app`), so a server without `OTEL_*` variables never loads the SDK. Only public APIs are used: the
SDK's TracerProvider, BatchSpanProcessor and Resource (which read the standard OTEL_* variables: sampler,
batch sizes, service name and resource attributes) and the OTLP/HTTP exporter (which reads the endpoint,
headers, timeout, compression and certificates). Nothing is patched and no global provider is set: the
spans come from the provider the app was built with.

Attributes follow the stable HTTP and database semantic conventions, with one deliberate omission:
`url.path` and `url.query` are not recorded, since a path carries user ids and session ids, which this
service keeps out of its logs, metrics and traces alike; `http.route` names the operation instead.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable, Mapping
from importlib.metadata import version

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace import TraceState as OtelTraceState
from starlette.types import Scope

from autional_sessions.db.statements import Statement
from autional_sessions.db.store import Store
from autional_sessions.observability.request_outcome import UNMATCHED, expose_routing
from autional_sessions.observability.tracing import ServerSpan, TraceParent, TraceState

INSTRUMENTATION_NAME = "autional_sessions"
# The installed distribution's, read once: the instrumentation scope's and the default service.version.
__version__ = version("autional-sessions")
# The methods the HTTP conventions name; any other is "_OTHER" (and the span is named "HTTP").
_KNOWN_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"})
_COLLECTION = re.compile(r'\b(?:FROM|INTO|UPDATE)\s+"?(\w+)', re.IGNORECASE)


def otlp_tracer_provider(service_name: str, environ: Mapping[str, str]) -> TracerProvider:
    """The SDK's provider with a batch processor and the OTLP/HTTP exporter, both configured by the
    standard variables. `service.name` is `service_name` (AUTIONAL_SERVICE_NAME) and `service.version` the
    package's, unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say otherwise."""
    named = {
        key.strip()
        for key, _, _ in (
            item.partition("=") for item in environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(",")
        )
    }
    if environ.get("OTEL_SERVICE_NAME", "").strip():
        named.add("service.name")
    defaults = {"service.name": service_name, "service.version": __version__}
    resource = Resource.create({key: value for key, value in defaults.items() if key not in named})
    # The app's lifespan shuts it down (flushing what is left); no second shutdown at exit.
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


class OtelTracing:
    """The request's SERVER span, made current so that the SQL spans become its children. Named by method
    and route template once routing has happened (never by the raw path)."""

    def __init__(
        self,
        provider: trace.TracerProvider,
        *,
        route_of: Callable[[Scope], str],
        client_of: Callable[[Scope], str] | None = None,
    ) -> None:
        self._tracer = provider.get_tracer(INSTRUMENTATION_NAME, __version__)
        self._route_of = route_of
        self._client_of = client_of

    @property
    def tracer(self) -> trace.Tracer:
        return self._tracer

    def start(self, scope: Scope, parent: TraceParent | None, tracestate: TraceState) -> ServerSpan:
        # The route is read from this very scope when the request is over.
        expose_routing(scope)
        context = None
        if parent is not None:
            remote = SpanContext(
                int(parent.trace_id, 16),
                int(parent.parent_id, 16),
                is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED if parent.sampled else TraceFlags.DEFAULT),
                trace_state=OtelTraceState(list(tracestate)),
            )
            context = trace.set_span_in_context(NonRecordingSpan(remote))
        method = scope["method"]
        span = self._tracer.start_span(
            method if method in _KNOWN_METHODS else "HTTP",
            context=context,
            kind=SpanKind.SERVER,
            attributes=self._request_attributes(scope, method),
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        ids = span.get_span_context()
        return ServerSpan(
            f"{ids.trace_id:032x}",
            f"{ids.span_id:016x}",
            parent_id=parent.parent_id if parent else None,
            sampled=ids.trace_flags.sampled,
            tracestate=tuple(ids.trace_state.items()),
            handle=(span, token),
        )

    def end(self, server_span: ServerSpan, scope: Scope, status: int, error: BaseException | None) -> None:
        span, token = server_span.handle
        try:
            route = self._route_of(scope)
            if route != UNMATCHED:
                span.update_name(f"{span.name} {route}")
                span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                # A 4xx is the client's error, not the server span's (the HTTP conventions).
                span.set_attribute("error.type", type(error).__qualname__ if error else str(status))
                span.set_status(Status(StatusCode.ERROR))
            span.end()
        finally:
            otel_context.detach(token)

    def _request_attributes(self, scope: Scope, method: str) -> dict[str, str | int]:
        attributes: dict[str, str | int] = {
            "http.request.method": method if method in _KNOWN_METHODS else "_OTHER",
            "url.scheme": scope.get("scheme", "http"),
            "network.protocol.version": scope.get("http_version", "1.1"),
        }
        if method not in _KNOWN_METHODS:
            attributes["http.request.method_original"] = method
        host = next((value for name, value in scope["headers"] if name == b"host"), None)
        if host is not None:
            address, _, port = host.decode("latin-1").rpartition(":")
            if not address or not port.isdigit() or address.endswith(":"):  # no port, or a bare IPv6
                address, port = host.decode("latin-1"), ""
            attributes["server.address"] = address
            if port:
                attributes["server.port"] = int(port)
        elif scope.get("server"):
            attributes["server.address"], attributes["server.port"] = scope["server"][0], scope["server"][1]
        if self._client_of is not None:
            attributes["client.address"] = self._client_of(scope)
        return attributes


class TracedStore:
    """A Store whose statements are CLIENT spans, children of the request's span. The span carries the
    statement's SQL with its placeholders (`db.query.text`), never the values bound to them, and an error's
    type but not its message (a driver's message may quote a value)."""

    def __init__(self, store: Store, tracer: trace.Tracer) -> None:
        self._store = store
        self._tracer = tracer
        self.dialect = store.dialect
        self._described: dict[str, tuple[str, dict[str, str]]] = {}

    def _describe(self, statement: Statement) -> tuple[str, dict[str, str]]:
        """The span name and attributes of a statement, worked out once per SQL text."""
        described = self._described.get(statement.sql)
        if described is None:
            operation = statement.sql.split(None, 1)[0].upper()
            collection = _COLLECTION.search(statement.sql)
            summary = f"{operation} {collection.group(1)}" if collection else operation
            attributes = {
                "db.system.name": self.dialect,
                "db.operation.name": operation,
                "db.query.summary": summary,
                "db.query.text": statement.sql,
            }
            if collection:
                attributes["db.collection.name"] = collection.group(1)
            described = self._described[statement.sql] = (summary, attributes)
        return described

    async def fetch(self, statement: Statement, params: tuple) -> list[tuple]:
        return await self._traced(self._store.fetch, statement, params)

    async def write(self, statement: Statement, params: tuple) -> list[tuple]:
        return await self._traced(self._store.write, statement, params)

    async def _traced(
        self, run: Callable[[Statement, tuple], Awaitable[list[tuple]]], statement: Statement, params: tuple
    ) -> list[tuple]:
        name, attributes = self._describe(statement)
        with self._tracer.start_as_current_span(
            name,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            # Both would put the exception's message on the span, where a driver may quote a value.
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                return await run(statement, params)
            except BaseException as exc:
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(Status(StatusCode.ERROR))
                raise

    def snapshot(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self._store.snapshot()

    async def close(self) -> None:
        await self._store.close()
