"""Log lines: JSON for production (one object a line, for a log pipeline to index), or a readable line
for local development. The access line of each request is made by `access_log.AccessLog`.

Under `serve`, lines are formatted and written on a thread of their own (`QueuedStreamHandler`): a request
only hands its record to a queue, and the event loop never waits for a write to stdout. The queue is
drained when the app shuts down (`drain_logs`), after its last request and before the process exits.

Tokens must never reach a log, whatever some code puts in a message: every handler set up here drops
anything that looks like a JWT (`RedactJwt`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import logging.config
import queue
import re
import sys
import threading
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener
from typing import IO, Any

import orjson

from autional_sessions.observability.request_context import active_request

FORMATS = ("json", "text")
ACCESS_LOGGER = "autional_sessions.access"

# A JWS in compact form: a base64url JSON header (so "eyJ", the encoding of '{"'), payload, signature.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
JWT_REDACTED = "[jwt redacted]"

# A record's JSON line, made when the record was (`json_line`): the access log's, whose fields are known.
PREFORMATTED = "preformatted_json"
# What every LogRecord has; the rest of its attributes are the caller's `extra` fields. Uvicorn adds
# `color_message`, the message again with terminal colour codes.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
    PREFORMATTED,
}


def configure_logging(level: str, fmt: str) -> None:
    """Log to stdout in `fmt` ("json" or "text") from `level` up, for this process: the service's own
    loggers and uvicorn's, each line written as it is logged. Worker processes get the same from
    `uvicorn_log_config`, written off their event loop."""
    logging.config.dictConfig(uvicorn_log_config(level, fmt, queued=False))


def uvicorn_log_config(level: str, fmt: str, *, queued: bool = True) -> dict[str, Any]:
    """The logging configuration, as `uvicorn.run(log_config=...)` takes it: uvicorn applies it in every
    worker process it starts. `queued`: formatted and written on a thread of the process's own."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    level = level.upper()
    handler: dict[str, Any] = {
        "stream": "ext://sys.stdout",
        "formatter": "default",
        "filters": ["redact_jwt"],
    }
    handler.update({"()": QueuedStreamHandler} if queued else {"class": "logging.StreamHandler"})
    return {
        "version": 1,
        # Loggers made at import (the service's, the libraries') keep working.
        "disable_existing_loggers": False,
        "filters": {"redact_jwt": {"()": RedactJwt}},
        # "default": the name under which uvicorn looks for the formatter it may have to adjust.
        "formatters": {"default": {"()": JsonFormatter if fmt == "json" else TextFormatter}},
        "handlers": {"default": handler},
        "root": {"level": level, "handlers": ["default"]},
        "loggers": {
            # Uvicorn's loggers lose the handlers uvicorn gives them, and go through the root's.
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            # Its access lines (raw path, query string) go nowhere, even when uvicorn is not told
            # access_log=False.
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }


class QueuedStreamHandler(QueueHandler):
    """A stream handler whose filters, formatter and writes run on a thread of its own.

    The thread calling the logger only captures the running request's ids, which live in its context, and
    hands the record over; a `QueueListener` thread applies this handler's filters (the JWT redaction) and
    formatter, and writes. On an event loop the records are handed over in batches: the first record of a
    batch schedules its hand-over `BATCH_SECONDS` later, on the loop, and a full batch goes at once: one
    queue put, one wake-up of the writing thread and one write serve a batch instead of each line (by
    itself this measured no faster in the bench; what made the access log cheap is its line made without
    a `LogRecord`, and made on this thread from the request's values: `write_json_line_later`).
    Off a loop (another thread, a command), a record is handed over at once, so lines of different threads
    may be written up to `BATCH_SECONDS` out of their order; each line's time says when it was logged.

    `close` (by `drain_logs`, or when the logging configuration is replaced) hands over the pending batch,
    writes what is queued and stops the thread; records logged after that are written at once, so nothing
    logged while the process shuts down is lost. Arguments are formatted on the thread: log values, not
    objects that change afterwards."""

    # A line waits at most this long on the loop before its batch goes to the writing thread.
    BATCH_SECONDS = 0.02
    MAX_BATCH = 512

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(queue.SimpleQueue())
        self._writer = _QueueWriter(stream, self)
        self._listener: QueueListener | None = _BatchListener(self.queue, self._writer)
        self._listener.start()
        # The batch being gathered, and the loop it is gathered on (a loop's callbacks never run at once,
        # so the list needs no lock); other threads' records are queued one by one.
        self._batch: list[logging.LogRecord | tuple[Callable[[Any], str], Any]] = []
        self._batch_loop: asyncio.AbstractEventLoop | None = None
        self._json_lines = False  # whether `write_json_line` may write (set with the formatter, filters)

    def handle(self, record: logging.LogRecord) -> bool:
        # Filtering waits for the writing thread, with the formatting.
        if self._listener is None:
            return bool(self._writer.handle(record))
        self._put(self.prepare(record))
        return True

    def write_json_line(self, line: str) -> bool:
        """Write `line`, a JSON log line made by the caller, as `JsonFormatter` would have made it from a
        record: the access log's fast way, without a `LogRecord`. False, and nothing written, when this
        handler would not write it as it is (another formatter, a filter other than the JWT redaction, a
        JWT-shaped text in it, the handler closed): the caller logs a record instead."""
        if _JWT.search(line):
            return False
        return self.write_json_line_later(str, line)

    def write_json_line_later(self, make: Callable[[Any], str], fields: Any) -> bool:
        """`write_json_line` for the line `make(fields)`, made on the writing thread, in the loop over its
        batch: the request that logs it only hands over its values (`fields`: values that do not change
        afterwards). A JWT-shaped text in the made line is redacted there, as `RedactJwt` redacts it field
        by field. False, and nothing written, when this handler would not write such lines (another
        formatter, a filter other than the JWT redaction, the handler closed)."""
        if self._listener is None or not self._json_lines:
            return False
        self._put((make, fields))
        return True

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        super().setFormatter(fmt)
        self._json_lines = self._writes_json_lines()

    def addFilter(self, filter: Any) -> None:
        super().addFilter(filter)
        self._json_lines = self._writes_json_lines()

    def removeFilter(self, filter: Any) -> None:
        super().removeFilter(filter)
        self._json_lines = self._writes_json_lines()

    def _writes_json_lines(self) -> bool:
        return isinstance(self.formatter, JsonFormatter) and all(
            isinstance(each, RedactJwt) for each in self.filters
        )

    def _put(self, item: logging.LogRecord | tuple[Callable[[Any], str], Any]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or (loop is not self._batch_loop and not self._gathers_on(loop)):
            self.enqueue(item)  # type: ignore[arg-type]  # the listener takes lines and batches too
            return
        batch = self._batch
        batch.append(item)
        if len(batch) == 1:
            loop.call_later(self.BATCH_SECONDS, self._hand_over)
        elif len(batch) >= self.MAX_BATCH:
            self._hand_over()

    def _gathers_on(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether records logged on `loop` are batched: the first loop to log is adopted, and another one
        once the first is closed (its pending batch is handed over then, as no timer of it will run)."""
        if self._batch_loop is loop:
            return True
        if self._batch_loop is not None and not self._batch_loop.is_closed():
            return False
        self._hand_over()
        self._batch_loop = loop
        return True

    def _hand_over(self) -> None:
        batch, self._batch = self._batch, []
        if batch:
            self.enqueue(batch)  # type: ignore[arg-type]  # the listener takes lists of records

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The request's ids, read where they are known (the formatters read them from the context
        # otherwise); as extra fields, which the formatters write alike.
        context = active_request()
        if context is not None:
            record.__dict__.setdefault("request_id", context.request_id)
            if context.span is not None:
                record.__dict__.setdefault("trace_id", context.span.traceparent)
                record.__dict__.setdefault("span_id", context.span.span_id)
        return record

    def wait_written(self, timeout: float | None = None) -> bool:
        """Hand over the pending batch, and wait until the writing thread has made and written every line
        handed over so far: True then, False at the timeout. Call it on the loop that logs (the batch is
        its own), or where nothing is batched."""
        if self._listener is None:
            return True  # closed: records are written as they come
        self._hand_over()
        written = threading.Event()
        self.enqueue(written)  # type: ignore[arg-type]  # the listener sets it once it reaches it
        return written.wait(timeout)

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            self._hand_over()
            listener.stop()  # writes every queued record first
        self._writer.flush()
        super().close()


class _BatchListener(QueueListener):
    """Writes what a `QueuedStreamHandler` hands over, a record or a batch of them, and flushes the stream
    once the queue is empty: one write call for every line the queue held, not one per line."""

    def __init__(self, queue_: queue.SimpleQueue, writer: _QueueWriter) -> None:
        super().__init__(queue_, writer)
        self._writer = writer

    def handle(self, record: Any) -> None:
        # `QueueListener.handle` is the documented per-item hook; the writer applies the owner's filters
        # to records, writes the lines that came made (`write_json_line`) as they are, and makes those
        # that came as a maker and its values (`write_json_line_later`).
        lines: list[str] = []  # consecutive made lines, written in one call
        for each in record if isinstance(record, list) else (record,):
            if isinstance(each, tuple):
                line = _made_line(*each)
                if line is not None:
                    lines.append(line)
                continue
            if isinstance(each, threading.Event):  # `wait_written`: everything before it is written
                if lines:
                    self._writer.write_lines(lines)
                    lines = []
                self._writer.flush()
                each.set()
                continue
            if lines:
                self._writer.write_lines(lines)
                lines = []
            self._writer.handle(each)
        if lines:
            self._writer.write_lines(lines)
        if self.queue.empty():
            self._writer.flush()


class _QueueWriter(logging.StreamHandler):
    """The writing end of a `QueuedStreamHandler`: its filters and formatter (set on the owner) are
    applied here, on the listener's thread; the stream is flushed by the listener, not after each line."""

    def __init__(self, stream: IO[str], owner: QueuedStreamHandler) -> None:
        super().__init__(stream)
        self._owner = owner

    def filter(self, record: logging.LogRecord) -> bool:
        return bool(self._owner.filter(record))

    def format(self, record: logging.LogRecord) -> str:
        return self._owner.format(record)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        # An error here (a closed pipe) is reported, as a write's is.
        try:
            super().flush()
        except Exception:
            _report_write_error()

    def write_lines(self, lines: list[str]) -> None:
        try:
            self.stream.write(self.terminator.join(lines) + self.terminator)
        except Exception:
            _report_write_error()


def _made_line(make: Callable[[Any], str], fields: Any) -> str | None:
    try:
        line = make(fields)
        if _JWT.search(line):
            # Value by value, as `RedactJwt` does: a pattern run over the JSON text could begin inside
            # an escape (a "\u001e" before "yJ...") and leave the line broken.
            line = orjson.dumps(_redact_values(orjson.loads(line))).decode()
    except Exception:
        _report_write_error()  # the line is lost, said on stderr; the thread goes on with the others
        return None
    return line


def _redact_values(value: Any) -> Any:
    if isinstance(value, str):
        return redact_jwts(value)
    if isinstance(value, dict):
        return {key: _redact_values(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact_values(item) for item in value]
    return value


def _report_write_error() -> None:
    # As `handleError` does for a record: a write error goes to stderr, never raised on the writing
    # thread, which would end it and leave every later line queued for nobody.
    if logging.raiseExceptions:
        traceback.print_exc(file=sys.stderr)


def json_line_sink(logger: logging.Logger) -> QueuedStreamHandler | None:
    """The one handler a record of `logger` reaches, when it is a `QueuedStreamHandler` that takes made JSON
    lines (`write_json_line`): no handler or filter on the way but the root logger's one handler. None
    when the logging configuration is any other (a test's, an operator's own), which records then serve."""
    current: logging.Logger | None = logger
    while current is not None and current is not logging.root:
        if current.handlers or current.filters or not current.propagate:
            return None
        current = current.parent
    handlers = logging.root.handlers
    if logging.root.filters or len(handlers) != 1 or not isinstance(handlers[0], QueuedStreamHandler):
        return None
    return handlers[0]


def drain_logs() -> None:
    """Write what the queued handlers hold and stop their threads: at shutdown, after the last request."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, QueuedStreamHandler):
            handler.close()


class RedactJwt(logging.Filter):
    """Replaces anything that looks like a JWT, in the message, the string extra fields and the
    traceback, with "[jwt redacted]"."""

    def filter(self, record: logging.LogRecord) -> bool:
        line = record.__dict__.get(PREFORMATTED)
        if line is not None:
            if not _JWT.search(line):
                return True  # the whole line, fields and message, is clean
            del record.__dict__[PREFORMATTED]  # redacted field by field below, and formatted again
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # Arguments that do not fit the message: it is logged without them. An error in a filter, unlike
            # one in a formatter, would reach the code that logs (and fail its request).
            message = str(record.msg)
            record.msg, record.args = message, None
        if _JWT.search(message):
            record.msg, record.args = redact_jwts(message), None
        for name, value in _extra_fields(record).items():
            if isinstance(value, str) and _JWT.search(value):
                setattr(record, name, redact_jwts(value))
        if record.exc_info and not record.exc_text:
            # Rendered here, so that the formatters (which reuse exc_text) print the redacted one.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_jwts(record.exc_text)
        return True


def redact_jwts(text: str) -> str:
    return _JWT.sub(JWT_REDACTED, text)


class _Formatter(logging.Formatter):
    def _exception(self, record: logging.LogRecord) -> str | None:
        """The traceback of the record's exception, rendered once (the redaction filter may have)."""
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        return record.exc_text or None


class JsonFormatter(_Formatter):
    """One JSON object a line: time (RFC 3339, UTC, milliseconds), level, logger, message; then the
    running request's request_id, trace_id and span_id, the record's extra fields, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        line = record.__dict__.get(PREFORMATTED)
        if line is not None:
            return line
        entry: dict[str, Any] = {
            "time": rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in _fields(record).items():
            entry.setdefault(name, value)  # an extra field never hides one of the four above
        exception = self._exception(record)
        if exception:
            entry["exception"] = exception
        # default=str: a log line with a value JSON has no type for (a UUID, a date) is still written.
        return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


class TextFormatter(_Formatter):
    """`time LEVEL logger: message  key=value ...` (fields without a value left out), and the traceback on
    the lines below."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{rfc3339(record.created)} {record.levelname:<8} {record.name}: {record.getMessage()}"
        fields = " ".join(f"{name}={value}" for name, value in _fields(record).items() if value is not None)
        if fields:
            line = f"{line}  {fields}"
        exception = self._exception(record)
        return f"{line}\n{exception}" if exception else line


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The running request's ids (if any), then the record's extra fields (which may set them too)."""
    fields: dict[str, Any] = {}
    context = active_request()
    if context is not None:
        fields["request_id"] = context.request_id
        if context.span is not None:
            fields["trace_id"] = context.span.traceparent
            fields["span_id"] = context.span.span_id
    fields.update(_extra_fields(record))
    return fields


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {name: value for name, value in vars(record).items() if name not in _RECORD_ATTRIBUTES}


def json_line(record: logging.LogRecord, fields: dict[str, Any]) -> None:
    """Give `record` its JSON line now, from `fields` (its extra fields, set on it too): what
    `JsonFormatter` would write, made with one call to orjson and no look at the record's attributes. A
    line with anything shaped like a JWT in it is made again, redacted, by the usual path."""
    entry = {
        "time": rfc3339(record.created),
        "level": record.levelname,
        "logger": record.name,
        "message": record.getMessage(),
        **fields,
    }
    record.__dict__.update(fields)
    record.__dict__[PREFORMATTED] = orjson.dumps(entry, default=str).decode()


def rfc3339(timestamp: float) -> str:
    """A log line's time: RFC 3339, UTC, to the millisecond."""
    second = int(timestamp)
    # %d truncates the milliseconds as int() would, in one step: a fifth faster than an f-string's int()
    # and format spec, on every access line.
    return "%s.%03dZ" % (_utc_second(second), (timestamp - second) * 1000)  # noqa: UP031


@functools.lru_cache(maxsize=4)
def _utc_second(second: int) -> str:
    # Many lines a second: the date and time are formatted once for all of them.
    return datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
