"""Traces of the real app: W3C trace context on every response, and, with a tracer provider, the request's
SERVER span and its SQL statements' CLIENT spans, as OpenTelemetry's in-memory exporter receives them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.testclient import TestClient

from autional_sessions.http.app import create_app
from autional_sessions.testing import test_engine as engine_under_test
from tests.factories import add_session, add_user

USER = "usr_trace_7f3a"
SESSION = "sess_trace_secret_91"
TEMPLATE = "/sessions/user/{user_id}/sessions"
URL = f"/sessions/user/{USER}/sessions"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture
def user(database):
    add_user(USER)
    add_session(SESSION, USER)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def traced_client(database, settings, store, exporter) -> Iterator[TestClient]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(settings, store=store, tracer_provider=provider)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_a_traceparent_is_continued_by_a_new_span_that_the_header_problem_and_log_name(
    client, auth_headers, user, access_log
):
    response = client.get(URL, headers={**auth_headers("usr_other"), "traceparent": TRACEPARENT})

    assert response.status_code == 403
    version, trace_id, span_id, flags = response.headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
    assert span_id != PARENT_ID
    body = response.json()
    assert (body["trace_id"], body["span_id"]) == (response.headers["traceparent"], span_id)
    (line,) = [json.loads(text) for text in access_log.getvalue().splitlines()]
    assert (line["trace_id"], line["span_id"]) == (body["trace_id"], body["span_id"])


@pytest.mark.parametrize(
    "headers",
    [{}, {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01-x"}, {"traceparent": TRACEPARENT.upper()}],
    ids=["absent", "invalid", "upper-case"],
)
def test_without_a_valid_traceparent_each_request_starts_a_new_trace(client, user, headers):
    first = client.get(URL, headers=headers)
    second = client.get(URL, headers=headers)

    trace_ids = {first.headers["traceparent"][3:35], second.headers["traceparent"][3:35]}
    assert len(trace_ids) == 2 and TRACE_ID not in trace_ids
    assert first.json()["trace_id"] == first.headers["traceparent"]


def test_the_request_is_a_server_span_with_its_sql_statements_as_client_spans(
    traced_client, exporter, auth_headers, user
):
    response = traced_client.get(
        URL + "?page=1&page_size=5",
        headers={**auth_headers(USER), "traceparent": TRACEPARENT, "tracestate": "congo=t61rcWkgMzE"},
    )

    assert response.status_code == 200
    spans = exporter.get_finished_spans()
    (server,) = [span for span in spans if span.kind == SpanKind.SERVER]
    statements = [span for span in spans if span.kind == SpanKind.CLIENT]
    # The ids the response gives are the exported span's, in the caller's trace, under the caller's span.
    assert response.headers["traceparent"] == f"00-{TRACE_ID}-{server.context.span_id:016x}-01"
    assert server.context.trace_id == int(TRACE_ID, 16)
    assert server.parent.span_id == int(PARENT_ID, 16) and server.parent.is_remote
    assert server.context.trace_state.to_header() == "congo=t61rcWkgMzE"
    assert server.name == f"GET {TEMPLATE}"
    attributes = dict(server.attributes)
    assert attributes["http.request.method"] == "GET"
    assert attributes["http.route"] == TEMPLATE
    assert attributes["http.response.status_code"] == 200
    assert attributes["url.scheme"] == "http"
    assert attributes["server.address"] == "testserver"
    assert "error.type" not in attributes
    assert statements, "no SQL span"
    for span in statements:
        assert span.parent.span_id == server.context.span_id
        assert span.context.trace_id == server.context.trace_id
        sql = span.attributes["db.query.text"]
        assert span.attributes["db.system.name"] == engine_under_test()
        assert span.attributes["db.operation.name"] == sql.split()[0].upper()
        assert span.name.startswith(span.attributes["db.operation.name"])
        # Placeholders, never the values bound to them.
        assert "?" in sql or "$1" in sql
        assert USER not in sql and SESSION not in sql
    for span in spans:
        text = json.dumps({"name": span.name, **dict(span.attributes)})
        assert USER not in text and SESSION not in text


def test_a_problem_names_the_exported_span(traced_client, exporter, auth_headers, user):
    response = traced_client.get(URL, headers=auth_headers("usr_other"))

    assert response.status_code == 403
    (server,) = [span for span in exporter.get_finished_spans() if span.kind == SpanKind.SERVER]
    assert server.parent is None  # no caller context: a new trace
    assert response.json()["span_id"] == f"{server.context.span_id:016x}"
    assert response.json()["trace_id"] == response.headers["traceparent"]
    assert server.attributes["http.response.status_code"] == 403
    assert server.status.status_code == StatusCode.UNSET  # a 4xx is not the server's error


def test_a_failing_statement_marks_both_spans_with_its_error_type(
    traced_client, exporter, auth_headers, user, break_database
):
    break_database()

    response = traced_client.get(URL, headers=auth_headers(USER))

    assert response.status_code == 500
    spans = exporter.get_finished_spans()
    (server,) = [span for span in spans if span.kind == SpanKind.SERVER]
    failed = [
        span for span in spans if span.kind == SpanKind.CLIENT and span.status.status_code == StatusCode.ERROR
    ]
    assert server.status.status_code == StatusCode.ERROR
    assert server.attributes["error.type"] == "500"
    assert failed and all(span.attributes["error.type"] for span in failed)
    assert all(not span.events for span in failed)  # no exception message that could quote a value


def test_an_unrouted_request_is_named_by_its_method_only(traced_client, exporter):
    traced_client.get(f"/users/{USER}")

    (server,) = exporter.get_finished_spans()
    assert server.name == "GET"
    assert "http.route" not in server.attributes
    assert USER not in json.dumps(dict(server.attributes))


@pytest.mark.slow
def test_without_otel_variables_the_server_loads_no_opentelemetry_sdk(settings):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environ.update(
        AUTIONAL_DATABASE_URL=settings.database_url,
        AUTIONAL_JWT_SECRET=settings.jwt_secret,
    )
    probe = (
        "import sys; from autional_sessions.http.app import create_app_from_env; create_app_from_env(); "
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )

    result = subprocess.run(
        [sys.executable, "-c", probe], env=environ, capture_output=True, text=True, timeout=60, check=True
    )

    assert result.stdout.strip() == "[]"
