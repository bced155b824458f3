"""W3C Trace Context parsing (Level 1), the ids of a request's span without OpenTelemetry, and when the
OTEL_* variables turn export on."""

from __future__ import annotations

import pytest

from autional_sessions.config import ConfigError, Settings, otel_export_requested
from autional_sessions.observability.tracing import (
    IdTracing,
    TraceParent,
    parse_traceparent,
    parse_tracestate,
    tracer_provider_for,
)

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
SCOPE = {"type": "http", "method": "GET", "path": "/", "headers": []}


def test_a_valid_traceparent_gives_the_callers_trace_span_and_sampled_flag():
    assert parse_traceparent(TRACEPARENT) == TraceParent(TRACE_ID, PARENT_ID, True)
    assert parse_traceparent(f"00-{TRACE_ID}-{PARENT_ID}-00") == TraceParent(TRACE_ID, PARENT_ID, False)
    assert parse_traceparent(f" {TRACEPARENT}\t") == TraceParent(TRACE_ID, PARENT_ID, True)


def test_a_future_version_is_read_by_the_version_00_layout():
    assert parse_traceparent(f"cc-{TRACE_ID}-{PARENT_ID}-09") == TraceParent(TRACE_ID, PARENT_ID, True)
    assert parse_traceparent(f"cc-{TRACE_ID}-{PARENT_ID}-08-what-comes-next") == TraceParent(
        TRACE_ID, PARENT_ID, False
    )


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        f"ff-{TRACE_ID}-{PARENT_ID}-01",  # version ff is invalid
        f"00-{TRACE_ID}-{PARENT_ID}-01-extra",  # version 00 is exactly 55 characters
        f"cc-{TRACE_ID}-{PARENT_ID}-01x",  # a future version's extra part starts with "-"
        f"00-{'0' * 32}-{PARENT_ID}-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id
        TRACEPARENT.upper(),  # HEXDIGLC: lower case only
        f"00-{TRACE_ID[:-1]}-{PARENT_ID}-01",
        f"00_{TRACE_ID}_{PARENT_ID}_01",
    ],
)
def test_an_invalid_traceparent_is_ignored(value):
    assert parse_traceparent(value) is None


def test_tracestate_lines_are_one_list_and_an_invalid_list_is_dropped():
    assert parse_tracestate(["congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7 , , tenant@vendor=x y"]) == (
        ("congo", "t61rcWkgMzE"),
        ("rojo", "00f067aa0ba902b7"),
        ("tenant@vendor", "x y"),
    )
    assert parse_tracestate(["Upper=1"]) == ()
    assert parse_tracestate(["a=1,a=2"]) == ()  # a key twice
    assert parse_tracestate([",".join(f"k{i}=v" for i in range(33))]) == ()  # over 32 members
    assert parse_tracestate(["a=b=c"]) == ()


def test_without_a_caller_context_each_span_starts_a_new_unsampled_trace():
    tracing = IdTracing()
    first, second = tracing.start(SCOPE, None, ()), tracing.start(SCOPE, None, ())

    assert first.trace_id != second.trace_id and first.span_id != second.span_id
    assert first.parent_id is None and not first.sampled
    assert parse_traceparent(first.traceparent) == TraceParent(first.trace_id, first.span_id, False)


def test_a_caller_context_is_continued_with_a_new_span_its_flag_and_its_tracestate():
    span = IdTracing().start(SCOPE, TraceParent(TRACE_ID, PARENT_ID, True), (("congo", "t61"),))

    assert (span.trace_id, span.parent_id, span.sampled) == (TRACE_ID, PARENT_ID, True)
    assert span.span_id != PARENT_ID and len(span.span_id) == 16
    assert span.tracestate == (("congo", "t61"),)
    assert span.traceparent == f"00-{TRACE_ID}-{span.span_id}-01"


@pytest.mark.parametrize(
    ("environ", "requested"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "sessions"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, True),
    ],
)
def test_export_is_on_only_when_the_standard_variables_ask_for_it(environ, requested):
    assert otel_export_requested(environ) is requested


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json",
            },
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        ),
    ],
)
def test_an_export_this_service_cannot_do_is_a_configuration_error_naming_the_variable(environ, named):
    with pytest.raises(ConfigError, match=named):
        otel_export_requested(environ)


def test_without_otel_variables_no_tracer_provider_is_made():
    assert tracer_provider_for(Settings.from_env({})) is None


def test_the_provider_honours_otel_service_name_and_otherwise_names_the_service(monkeypatch):
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(name, raising=False)
    provider = tracer_provider_for(Settings.from_env(environ))
    try:
        assert provider.resource.attributes["service.name"] == "autional-sessions"
    finally:
        provider.shutdown()

    monkeypatch.setenv("OTEL_SERVICE_NAME", "sessions-eu")  # the SDK reads its own variables
    provider = tracer_provider_for(Settings.from_env({**environ, "OTEL_SERVICE_NAME": "sessions-eu"}))
    try:
        assert provider.resource.attributes["service.name"] == "sessions-eu"
    finally:
        provider.shutdown()
