"""A real `autional-sessions serve` exports its spans over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT asks
for it: a small OTLP receiver in the test decodes what arrives (ExportTraceServiceRequest, protobuf)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from autional_sessions.testing import TEST_AUDIENCE, TEST_ISSUER, TEST_SECRET
from tests.factories import add_session, add_user
from tests.postgres.support import running_server

USER = "usr_export_1"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


class OtlpReceiver:
    """POST /v1/traces, as an OpenTelemetry collector takes it; keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list = []
        self.resources: list = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    receiver.resources.append(resource_spans.resource)
                    for scope_spans in resource_spans.scope_spans:
                        receiver.spans.extend(scope_spans.spans)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


def _token() -> str:
    import jwt

    now = int(time.time())
    claims = {"sub": USER, "iat": now, "exp": now + 300, "iss": TEST_ISSUER, "aud": TEST_AUDIENCE}
    return jwt.encode(claims, TEST_SECRET, algorithm="HS256")


def test_the_requests_spans_reach_the_otlp_endpoint_in_the_callers_trace(
    database, database_url, receiver, tmp_path
):
    add_user(USER)
    add_session("sess_export_1", USER)
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_SERVICE_NAME": "sessions-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # milliseconds: export soon after the request
    }

    with running_server(database_url, tmp_path / "server.log", env=env) as server:
        response = httpx.get(
            f"{server.url}/sessions/user/{USER}/sessions",
            headers={"Authorization": f"Bearer {_token()}", "traceparent": TRACEPARENT},
            timeout=10,
        )
        assert response.status_code == 200
        span_id = response.headers["traceparent"].split("-")[2]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(s.span_id.hex() == span_id for s in receiver.spans):
            time.sleep(0.1)

    ours = [span for span in receiver.spans if span.trace_id.hex() == TRACE_ID]
    (server_span,) = [span for span in ours if span.span_id.hex() == span_id]
    assert server_span.name == "GET /sessions/user/{user_id}/sessions"
    assert server_span.parent_span_id.hex() == "00f067aa0ba902b7"
    statements = [span for span in ours if span.parent_span_id == server_span.span_id]
    assert statements, f"no SQL span among {[span.name for span in ours]}"
    names = {kv.key: kv.value.string_value for resource in receiver.resources for kv in resource.attributes}
    assert names["service.name"] == "sessions-under-test"
