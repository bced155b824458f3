"""What a check expects of a response, and how it reports what it found instead.

A check looks at every variant it tries and fails once, at the end, with all it found: a report that says
"alg nOnE with an empty signature got 200" is worth more than the first assertion's traceback.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import pytest

from autional_sessions.spec import load_spec

from .deployment import Exchange

# What a body must not hold: a stack trace (Python, Java, Go, Node, .NET), a source file path, SQL, or a
# database driver's error. Matches that merely echo the request (a path, a parameter) do not count.
LEAKS = tuple(
    re.compile(pattern)
    for pattern in (
        r"Traceback \(most recent call last\)",
        r'File "[^"]+", line \d+',
        r"\bat [\w$.]+\([\w]+\.java:\d+\)",
        r"goroutine \d+ \[",
        r"\bat [\w.<>]+ \((?:/|[A-Z]:\\)[^)]+:\d+:\d+\)",
        r"(?:/usr|/home|/opt|/srv|/app|/var|/root|[A-Z]:\\)[\w./\\-]*\.(?:py|java|go|js|ts|rb|php|cs)\b",
        r"site-packages|dist-packages|node_modules[/\\]",
        r"\b(?:SELECT|INSERT INTO|UPDATE|DELETE FROM)\b[^\n]{0,200}?\b(?:FROM|WHERE|VALUES|SET)\b",
        r"\b(?:sqlite3|psycopg2?|asyncpg|peewee|sqlalchemy)\.[\w.]*(?:Error|Exception)\b",
        r"\b(?:OperationalError|ProgrammingError|IntegrityError|InterfaceError|UndefinedTable)\b",
        r"SQLSTATE|syntax error at or near|no such table|no such column",
        # Go, Java and the databases' own words: lib/pq and pgx, MySQL, PostgreSQL, SQLite, Oracle, a panic.
        r"\bpq: [a-z]|\bERROR: (?:relation|column|syntax|invalid input|duplicate key)|relation \"[^\"]+\" does not exist",
        r"You have an error in your SQL syntax|\bError \d{4} \(\w{5}\)|\bORA-\d{5}\b",
        r'near "[^"]*": syntax error|unrecognized token:|SQLITE_[A-Z]+',
        r"\b(?:java|javax|jakarta|org\.springframework|org\.hibernate|org\.postgresql|com\.mysql)\.[\w.$]*(?:Exception|Error)\b",
        r"\b\w*SQLException\b|runtime error: [a-z]|nil pointer dereference|\bpanic: ",
        r"\b(?:AttributeError|KeyError|TypeError|IndexError|NameError|ZeroDivisionError): ",
    )
)
# A URI reference (RFC 3986 section 4.1), as a problem's `type` must be: no space, nothing outside its
# character set, a first segment without ':' unless it is a scheme.
_URI_REFERENCE = re.compile(
    r"^(?:[A-Za-z][A-Za-z0-9+.-]*:|(?![^/?#]*:))[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*$"
)
# Findings listed in a failure's reason, and curl lines shown to reproduce them.
_SHOWN = 5


class CheckFailed(AssertionError):
    """A check's verdict: what broke the rule, and the requests that show it."""

    def __init__(self, reason: str, exchanges: list[Exchange]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exchanges = exchanges


class Findings:
    """What a check found wrong, each with the exchange that shows it."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Exchange | None]] = []

    def add(self, message: str, exchange: Exchange | None = None) -> None:
        self.items.append((message, exchange))

    def extend(self, messages: list[str], exchange: Exchange | None = None, prefix: str = "") -> None:
        for message in messages:
            self.add(prefix + message, exchange)

    def __bool__(self) -> bool:
        return bool(self.items)

    def conclude(self) -> None:
        """Fail the check when anything was found."""
        if not self.items:
            return
        lines = [message for message, _ in self.items[:_SHOWN]]
        if len(self.items) > _SHOWN:
            lines.append(f"... and {len(self.items) - _SHOWN} more")
        exchanges: list[Exchange] = []
        for _, exchange in self.items:
            if exchange is not None and exchange not in exchanges:
                exchanges.append(exchange)
        raise CheckFailed("; ".join(lines), exchanges[:_SHOWN])


def skip(reason: str) -> None:
    pytest.skip(reason)


# Problems (RFC 9457, dto.Problem) ------------------------------------------------------------------------
@functools.cache
def _problem_validator() -> Any:
    from jsonschema import Draft4Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    spec = load_spec()
    registry = Registry().with_resource(
        "urn:openapi", Resource.from_contents(spec, default_specification=DRAFT4)
    )
    return Draft4Validator({"$ref": "urn:openapi#/components/schemas/dto.Problem"}, registry=registry)


def problem_violations(exchange: Exchange, status: int | set[int] | None = None) -> list[str]:
    """Why this is not the problem response expected (empty when it is): the status, the media type, a
    dto.Problem body whose `status` is the HTTP status."""
    found = []
    expected = {status} if isinstance(status, int) else status
    if expected is not None and exchange.status not in expected:
        want = " or ".join(str(s) for s in sorted(expected))
        found.append(f"status {exchange.status}, expected {want}")
    if exchange.media_type != "application/problem+json":
        found.append(f"Content-Type {exchange.headers.get('content-type')!r}, not application/problem+json")
    body = exchange.json()
    if not isinstance(body, dict):
        found.append("the body is not a JSON object")
        return found
    kind = body.get("type")
    if isinstance(kind, str) and not _URI_REFERENCE.match(kind):
        found.append(f"problem type {kind[:80]!r} is not a URI reference (RFC 9457 section 3.1.1)")
    if body.get("status") != exchange.status:
        found.append(f"problem status {body.get('status')!r} differs from the HTTP status {exchange.status}")
    errors = sorted(_problem_validator().iter_errors(body), key=lambda e: list(e.path))
    if errors:
        found.append("the body is not a dto.Problem: " + errors[0].message[:200])
    return found


# Bearer challenges (RFC 6750 section 3) -----------------------------------------------------------------
_PARAM = re.compile(r'([A-Za-z0-9_\-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def bearer_challenge(exchange: Exchange) -> dict[str, str] | None:
    """The parameters of the response's Bearer challenge, or None when it sends none."""
    for value in exchange.headers.get_list("www-authenticate"):
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() == "bearer":
            return {
                m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
                for m in _PARAM.finditer(rest)
            }
    return None


def refused_token(exchange: Exchange, label: str, *, error: str | None = "invalid_token") -> list[str]:
    """Why this is not a refusal of the token (empty when it is): a 401 problem with a Bearer challenge
    whose error is `error` (RFC 6750 section 3.1: invalid_token for a token that is expired, revoked,
    malformed or otherwise invalid; no error code at all when the request carries no bearer token)."""
    found = problem_violations(exchange, 401)
    challenge = bearer_challenge(exchange)
    if challenge is None:
        found.append("no WWW-Authenticate: Bearer challenge")
    elif error is not None and challenge.get("error") != error:
        found.append(f'WWW-Authenticate error is {challenge.get("error")!r}, expected "{error}"')
    return [f"{label}: {message}" for message in found]


def accepted(exchange: Exchange, label: str, status: int = 200) -> list[str]:
    if exchange.status != status:
        return [f"{label}: status {exchange.status}, expected {status} ({_detail(exchange)})"]
    return []


def _detail(exchange: Exchange) -> str:
    body = exchange.json()
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])[:160]
    return exchange.body[:120].decode("utf-8", "replace")
