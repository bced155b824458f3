"""Log lines: JSON with the request's ids, one access line per request that names no path, no token in
any line, a readable text form, and a configuration uvicorn takes."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import logging.config
import pickle
import re
import threading
import time
from collections.abc import Callable, Iterator

import orjson
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from autional_sessions.http.client_address import ClientAddress
from autional_sessions.observability.access_log import AccessLog
from autional_sessions.observability.log_format import (
    ACCESS_LOGGER,
    JWT_REDACTED,
    JsonFormatter,
    QueuedStreamHandler,
    RedactJwt,
    TextFormatter,
    configure_logging,
    uvicorn_log_config,
)
from autional_sessions.observability.request_context import RequestContextMiddleware
from autional_sessions.observability.request_outcome import UNMATCHED, RouteTemplates
from tests.observed_app import SECRET_USER, SESSIONS_TEMPLATE, SPEC, call, observed_app

RFC3339_UTC_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
# A signed token as an identity provider issues them (header, payload, signature).
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiJ1c3Jfc2VjcmV0MTIzIiwiZXhwIjo0MTAyNDQ0ODAwfQ"
    ".c2lnbmF0dXJlLW9mLXRoZS10b2tlbi1ub3QtYS1yZWFsLW9uZQ"
)
LOGGER = "autional_sessions.test_log_format"


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    """What the service's loggers write, through a handler set up as configure_logging sets up its own."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactJwt())
    logger = logging.getLogger("autional_sessions")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """configure_logging changes the process's loggers: they are put back as they were."""
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"]
    saved = {name: logging.getLogger(name) for name in names}
    state = {
        name: (lg.level, lg.handlers[:], lg.filters[:], lg.propagate, lg.disabled)
        for name, lg in saved.items()
    }
    yield
    for name, logger in saved.items():
        logger.level, handlers, filters, logger.propagate, logger.disabled = state[name]
        logger.handlers[:] = handlers
        logger.filters[:] = filters


def test_a_json_line_carries_time_level_logger_message_and_extra_fields(output):
    logging.getLogger(LOGGER).warning("pool exhausted after %d ms", 250, extra={"pool_size": 5})

    (line,) = lines(output)
    assert RFC3339_UTC_MS.fullmatch(line["time"])
    assert line["level"] == "WARNING"
    assert line["logger"] == LOGGER
    assert line["message"] == "pool exhausted after 250 ms"
    assert line["pool_size"] == 5
    # Outside any request there is no request id to give, rather than a made-up one.
    assert "request_id" not in line


def test_an_extra_field_cannot_pass_for_one_of_the_line_s_own(output):
    logging.getLogger(LOGGER).info("hello", extra={"level": "forged", "logger": "forged"})

    (line,) = lines(output)
    assert (line["level"], line["logger"]) == ("INFO", LOGGER)


def test_a_line_logged_during_a_request_carries_its_request_id_and_trace_context(output):
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        logging.getLogger(LOGGER).info("inside")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    response = call(
        RequestContextMiddleware(app),
        "GET",
        "/",
        headers={"X-Request-ID": "req-1", "traceparent": TRACEPARENT},
    )

    (line,) = lines(output)
    assert line["request_id"] == "req-1"
    # This service's span, in the caller's trace: the traceparent the response carries.
    assert line["trace_id"] == response.headers["traceparent"]
    assert line["trace_id"].startswith(TRACEPARENT[:36])
    assert line["span_id"] == line["trace_id"][36:52] != TRACEPARENT[36:52]


def test_an_exception_is_rendered_as_its_traceback_in_one_field(output):
    try:
        raise ValueError("the cause")
    except ValueError:
        logging.getLogger(LOGGER).exception("it failed")

    (line,) = lines(output)
    assert line["message"] == "it failed"
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert line["exception"].endswith("ValueError: the cause")


def test_a_jwt_is_redacted_from_the_message_its_arguments_extra_fields_and_traceback(output):
    logger = logging.getLogger(LOGGER)
    logger.info(f"token {JWT} refused")
    logger.info("token %s refused", f"Bearer {JWT}", extra={"authorization": f"Bearer {JWT}"})
    try:
        raise ValueError(f"cannot decode {JWT}")
    except ValueError:
        logger.exception("decoding failed")

    assert JWT[:20] not in output.getvalue()
    first, second, third = lines(output)
    assert first["message"] == f"token {JWT_REDACTED} refused"
    assert second["message"] == f"token Bearer {JWT_REDACTED} refused"
    assert second["authorization"] == f"Bearer {JWT_REDACTED}"
    assert third["exception"].endswith(f"ValueError: cannot decode {JWT_REDACTED}")


def test_a_call_whose_arguments_do_not_fit_its_message_logs_the_message_and_does_not_raise(output):
    logging.getLogger(LOGGER).info("token %s for %s", JWT)

    assert lines(output)[0]["message"] == "token %s for %s"


def test_text_that_only_resembles_a_jwt_in_part_is_kept(output):
    logging.getLogger(LOGGER).info("eyJ alone, and a.b.c, stay")

    assert lines(output)[0]["message"] == "eyJ alone, and a.b.c, stay"


def access_app() -> Callable:
    return observed_app(
        route_of=RouteTemplates(SPEC).of, recorders=[AccessLog(client_of=ClientAddress().of).record]
    )


def access_lines(stream: io.StringIO) -> list[dict]:
    return [line for line in lines(stream) if line["logger"] == ACCESS_LOGGER]


def test_one_access_line_per_request_names_its_route_template_and_no_path_query_or_header(output):
    response = call(
        access_app(),
        "GET",
        f"/sessions/user/{SECRET_USER}/sessions?page=2",
        headers={
            "Authorization": f"Bearer {JWT}",
            "X-Request-ID": "req-access-1",
            "traceparent": TRACEPARENT,
        },
    )

    assert response.status_code == 200
    (line,) = access_lines(output)
    assert line["level"] == "INFO"
    assert line["message"] == f"GET {SESSIONS_TEMPLATE} 200"
    assert line["request_id"] == response.headers["X-Request-ID"] == "req-access-1"
    assert line["route"] == SESSIONS_TEMPLATE
    assert (line["method"], line["status"]) == ("GET", 200)
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["trace_id"] == response.headers["traceparent"]
    assert line["trace_id"].startswith(TRACEPARENT[:36])
    assert line["span_id"] == line["trace_id"][36:52]
    assert line["client_ip"] == "127.0.0.1"
    written = output.getvalue()
    for secret in (SECRET_USER, "page=2", "Bearer", JWT[:20]):
        assert secret not in written


def test_requests_that_match_no_operation_or_fail_get_one_access_line_each(output):
    app = access_app()

    call(app, "GET", f"/users/{SECRET_USER}")
    call(app, "GET", "/broken")

    found = [(line["route"], line["status"]) for line in access_lines(output)]
    assert found == [(UNMATCHED, 404), ("/broken", 500)]
    # No traceparent came in: each request is a trace of its own.
    trace_ids = {line["trace_id"][3:35] for line in access_lines(output)}
    assert len(trace_ids) == 2
    assert SECRET_USER not in output.getvalue()


def test_the_text_format_is_one_readable_line():
    record = logging.LogRecord(LOGGER, logging.INFO, __file__, 1, "listening on %s", ("port 8000",), None)
    record.workers = 4
    record.trace_id = None  # nothing to read: left out

    line = TextFormatter().format(record)

    time, rest = line.split(" ", 1)
    assert RFC3339_UTC_MS.fullmatch(time)
    assert rest == f"INFO     {LOGGER}: listening on port 8000  workers=4"


def test_the_text_format_puts_a_traceback_on_the_lines_below():
    try:
        raise ValueError("the cause")
    except ValueError as exc:
        record = logging.LogRecord(
            LOGGER, logging.ERROR, __file__, 1, "failed", None, (ValueError, exc, None)
        )

    first, *rest = TextFormatter().format(record).splitlines()

    assert first.endswith(f"ERROR    {LOGGER}: failed")
    assert rest[-1] == "ValueError: the cause"


@pytest.mark.usefixtures("restored_logging")
@pytest.mark.parametrize("fmt", ["json", "text"])
def test_uvicorn_takes_the_configuration_and_its_workers_can_receive_it(fmt):
    config = uvicorn_log_config("info", fmt)

    # uvicorn.Config applies log_config at once (in a worker process: when it starts, from a pickled copy).
    uvicorn.Config(
        "autional_sessions.http.app:create_app_from_env", log_config=pickle.loads(pickle.dumps(config))
    )

    handler = logging.getLogger().handlers[-1]
    assert isinstance(handler.formatter, JsonFormatter if fmt == "json" else TextFormatter)
    assert any(isinstance(f, RedactJwt) for f in handler.filters)


@pytest.mark.usefixtures("restored_logging")
def test_configure_logging_writes_json_for_the_service_and_uvicorn_and_drops_uvicorn_s_access_lines(capsys):
    configure_logging("info", "json")

    logging.getLogger(LOGGER).debug("below the level")
    logging.getLogger(LOGGER).info("token %s", JWT)
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42, extra={"color_message": "x"})
    logging.getLogger("uvicorn.access").info(
        '%s - "GET %s HTTP/1.1" 200', "1.2.3.4:5", f"/u/{SECRET_USER}?a=1"
    )

    written = capsys.readouterr().out
    found = [json.loads(line) for line in written.splitlines()]
    assert [(line["logger"], line["message"]) for line in found] == [
        (LOGGER, f"token {JWT_REDACTED}"),
        ("uvicorn.error", "Started server process [42]"),
    ]
    assert "color_message" not in found[1]
    assert SECRET_USER not in written


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="json, text"):
        uvicorn_log_config("info", "xml")


@contextlib.contextmanager
def queued_logger(name: str, stream: io.StringIO) -> Iterator[tuple[logging.Logger, QueuedStreamHandler]]:
    """A logger of this module's own, writing JSON lines (JWTs redacted) to `stream` through a
    `QueuedStreamHandler`, as `serve` sets one up; the handler is taken off the logger afterwards."""
    handler = QueuedStreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactJwt())
    logger = logging.getLogger(f"{LOGGER}.{name}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield logger, handler
    finally:
        logger.removeHandler(handler)


def test_a_queued_handler_writes_every_record_by_the_time_it_is_closed_and_after_that_at_once():
    stream = io.StringIO()
    with queued_logger("queued", stream) as (logger, handler):
        for n in range(2000):
            logger.info("line %d with %s", n, JWT)
        handler.close()
        written = lines(stream)
        logger.info("after the close")

    assert [line["message"] for line in written] == [f"line {n} with {JWT_REDACTED}" for n in range(2000)]
    assert lines(stream)[-1]["message"] == "after the close"


def test_an_access_line_with_a_jwt_shaped_request_id_is_redacted_like_any_other(output):
    short_jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"

    call(access_app(), "GET", f"/sessions/user/{SECRET_USER}/sessions", headers={"X-Request-ID": short_jwt})

    (line,) = access_lines(output)
    assert line["request_id"] == JWT_REDACTED
    assert line["route"] == SESSIONS_TEMPLATE
    assert short_jwt not in output.getvalue()


@pytest.fixture
def served_output(restored_logging) -> Iterator[tuple[io.StringIO, QueuedStreamHandler]]:
    """The logging configuration `serve` gives its workers (JSON lines written by a thread), to a stream."""
    stream = io.StringIO()
    config = uvicorn_log_config("info", "json")
    config["handlers"]["default"]["stream"] = stream
    logging.config.dictConfig(config)
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler, QueuedStreamHandler)
    yield stream, handler
    handler.close()


def test_under_serve_the_access_line_is_made_without_a_log_record_and_reads_as_the_formatter_s(
    served_output, monkeypatch
):
    stream, handler = served_output
    # pytest's own capture handlers aside: the root's one handler is serve's, as in a worker.
    monkeypatch.setattr(logging.getLogger(), "handlers", [handler])
    # The made line goes straight to the handler: a LogRecord made for it would fail the request.
    monkeypatch.setattr(logging.getLogger(ACCESS_LOGGER), "makeRecord", None)
    app = access_app()

    response = call(
        app, "GET", f"/sessions/user/{SECRET_USER}/sessions", headers={"traceparent": TRACEPARENT}
    )
    call(app, "GET", "/broken")
    handler.close()

    first, second = access_lines(stream)
    assert list(first) == [
        "time", "level", "logger", "message", "request_id", "route", "method", "status", "duration_ms",
        "trace_id", "span_id", "client_ip",
    ]  # fmt: skip
    assert RFC3339_UTC_MS.fullmatch(first["time"])
    assert (first["level"], first["message"]) == ("INFO", f"GET {SESSIONS_TEMPLATE} 200")
    assert first["request_id"] == response.headers["X-Request-ID"]
    assert first["trace_id"] == response.headers["traceparent"]
    assert (first["client_ip"], second["route"], second["status"]) == ("127.0.0.1", "/broken", 500)
    assert SECRET_USER not in json.dumps([first, second])  # (the test client's own log line names it)


def test_under_serve_an_access_line_with_a_jwt_shaped_field_is_redacted(served_output):
    stream, handler = served_output
    short_jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"

    call(access_app(), "GET", f"/sessions/user/{SECRET_USER}/sessions", headers={"X-Request-ID": short_jwt})
    handler.close()

    (line,) = access_lines(stream)
    assert line["request_id"] == JWT_REDACTED
    assert short_jwt not in stream.getvalue()


def test_on_an_event_loop_records_and_made_lines_are_written_in_order_by_batches_and_all_by_the_close():
    stream = io.StringIO()
    batch = QueuedStreamHandler.MAX_BATCH
    count = batch * 2 + 10  # full batches, and one only its timer or the close hands over

    with queued_logger("batched", stream) as (logger, handler):

        async def log_on_the_loop() -> int:
            for n in range(count):
                if n % 2:
                    logger.info("record %d", n)
                else:
                    assert handler.write_json_line(json.dumps({"message": f"line {n}"}))
            # Each full batch went to the writing thread at once; the rest waits on the loop for its
            # timer, which cannot run while this coroutine holds the loop.
            deadline = time.monotonic() + 10
            while len(lines(stream)) < batch * 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            return len(lines(stream))

        written_on_the_loop = asyncio.run(log_on_the_loop())
        handler.close()

    assert written_on_the_loop == batch * 2
    messages = [line["message"] for line in lines(stream)]
    assert messages == [f"{'record' if n % 2 else 'line'} {n}" for n in range(count)]


def test_a_made_line_is_refused_where_the_handler_would_not_write_it_as_it_is():
    handler = QueuedStreamHandler(io.StringIO())
    try:
        assert not handler.write_json_line('{"message": "no formatter yet"}')
        handler.setFormatter(TextFormatter())
        assert not handler.write_json_line('{"message": "text lines"}')
        handler.setFormatter(JsonFormatter())
        handler.addFilter(RedactJwt())
        assert handler.write_json_line('{"message": "json lines"}')
        assert not handler.write_json_line(json.dumps({"message": JWT}))
        handler.addFilter(logging.Filter("another"))
        assert not handler.write_json_line('{"message": "a filter of another kind"}')
    finally:
        handler.close()
    assert not handler.write_json_line('{"message": "closed"}')


def _message_line(fields: tuple[str, int]) -> str:
    return json.dumps({"message": f"{fields[0]} {fields[1]}"})


def test_a_line_handed_over_as_its_values_is_made_on_the_writing_thread_in_order_with_the_others():
    stream = io.StringIO()
    made_on: set[str] = set()

    def line_of(fields: tuple[str, int]) -> str:
        made_on.add(threading.current_thread().name)
        return _message_line(fields)

    with queued_logger("later", stream) as (logger, handler):

        async def log_on_the_loop() -> None:
            for n in range(30):
                if n % 3 == 0:
                    logger.info("record %d", n)
                elif n % 3 == 1:
                    assert handler.write_json_line(json.dumps({"message": f"line {n}"}))
                else:
                    assert handler.write_json_line_later(line_of, ("values", n))

        asyncio.run(log_on_the_loop())
        handler.close()

    expected = [f"{('record', 'line', 'values')[n % 3]} {n}" for n in range(30)]
    assert [line["message"] for line in lines(stream)] == expected
    assert made_on and threading.main_thread().name not in made_on


def test_a_jwt_shaped_text_in_a_line_made_later_is_redacted_and_the_line_kept():
    stream = io.StringIO()
    with queued_logger("later_jwt", stream) as (_logger, handler):
        assert handler.write_json_line_later(_message_line, (f"token {JWT}", 1))
        handler.close()

    assert [line["message"] for line in lines(stream)] == [f"token {JWT_REDACTED} 1"]


def test_a_redacted_line_made_later_stays_valid_json_whatever_escapes_it_holds():
    # orjson writes "\x1e" as "\u001e": a redaction run over the JSON text would see "eyJ..." in the escape.
    stream = io.StringIO()
    value = f"\x1eyJa.b.c then {JWT}"
    with queued_logger("later_escape", stream) as (_logger, handler):
        assert handler.write_json_line_later(lambda fields: orjson.dumps({"message": fields}).decode(), value)
        handler.close()

    assert [line["message"] for line in lines(stream)] == [f"\x1eyJa.b.c then {JWT_REDACTED}"]


def test_waiting_for_the_writing_thread_returns_once_every_line_handed_over_is_written():
    stream = io.StringIO()
    with queued_logger("waited", stream) as (_logger, handler):

        async def log_and_wait() -> int:
            for n in range(100):  # fewer than a batch: on the loop, they wait for its timer
                assert handler.write_json_line_later(_message_line, ("waited", n))
            assert handler.wait_written(timeout=10)
            return len(lines(stream))

        written = asyncio.run(log_and_wait())
        handler.close()

    assert written == 100


def test_a_line_whose_making_fails_is_reported_and_the_lines_after_it_are_written(capsys):
    stream = io.StringIO()

    def broken(_fields: object) -> str:
        raise ValueError("cannot make this line")

    def not_a_line(_fields: object) -> str:
        return None  # type: ignore[return-value]  # a maker's bug: the thread must outlive it

    with queued_logger("later_broken", stream) as (_logger, handler):
        assert handler.write_json_line_later(broken, ())
        assert handler.write_json_line_later(not_a_line, ())
        assert handler.write_json_line_later(_message_line, ("after", 2))
        handler.close()

    assert [line["message"] for line in lines(stream)] == ["after 2"]
    err = capsys.readouterr().err
    assert "cannot make this line" in err and "TypeError" in err


def test_a_line_to_make_later_is_refused_where_the_handler_would_not_write_json_lines():
    handler = QueuedStreamHandler(io.StringIO())
    try:
        assert not handler.write_json_line_later(_message_line, ("no formatter", 0))
        handler.setFormatter(JsonFormatter())
        handler.addFilter(RedactJwt())
        assert handler.write_json_line_later(_message_line, ("json", 1))
        handler.addFilter(logging.Filter("another"))
        assert not handler.write_json_line_later(_message_line, ("another filter", 2))
    finally:
        handler.close()
    assert not handler.write_json_line_later(_message_line, ("closed", 3))


def test_a_stream_that_fails_to_flush_stops_no_later_line():
    class FailsOnce(io.StringIO):
        failed = False

        def flush(self) -> None:
            if not self.failed:
                self.failed = True
                raise BrokenPipeError("the log reader went away")

    stream = FailsOnce()
    with queued_logger("flush", stream) as (logger, handler):
        logger.info("before")
        deadline = time.monotonic() + 10
        while not stream.failed and time.monotonic() < deadline:
            time.sleep(0.01)
        logger.info("after")
        handler.close()

    assert stream.failed
    assert [line["message"] for line in lines(stream)] == ["before", "after"]


def test_under_serve_a_handler_added_to_the_access_logger_later_gets_the_lines_as_records(served_output):
    stream, handler = served_output
    app = access_app()
    call(app, "GET", f"/sessions/user/{SECRET_USER}/sessions")
    seen: list[logging.LogRecord] = []
    extra = logging.Handler()
    extra.emit = seen.append  # type: ignore[method-assign]
    access = logging.getLogger(ACCESS_LOGGER)
    access.addHandler(extra)
    try:
        call(app, "GET", f"/sessions/user/{SECRET_USER}/sessions")
    finally:
        access.removeHandler(extra)
    handler.close()

    assert [record.getMessage() for record in seen] == [f"GET {SESSIONS_TEMPLATE} 200"]
    assert len(access_lines(stream)) == 2  # and the usual handler still wrote both
