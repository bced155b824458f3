"""Problem and header checks: rules every response keeps, judged on every response the run saw.

They run last: besides probes of their own (an error of each kind one token can provoke, request ids
sane and not, foreign origins, hostile inputs; in process also a 500, a 503 and a 429), they judge every
exchange of the checks before them and of the schema's thousands of generated cases.
"""

from __future__ import annotations

import email.utils
import re
import secrets
from collections.abc import Callable, Iterable

import pytest

from autional_sessions.spec import HTTP_METHODS, load_spec

from .deployment import Deployment, Exchange, operation
from .expect import LEAKS, Findings, problem_violations, skip

check = pytest.mark.check
# X-Request-ID values the spec calls sane (1 to 128 of A-Z a-z 0-9 . _ : -), and some it does not.
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SANE_IDS = ("contract-test.req:0001_ABC", "x", "r" * 128)
INSANE_IDS = ("r" * 129, "has space", "semi;colon", "<script>", 'quote"d')
ARBITRARY_ORIGINS = ("https://evil.contract-test.invalid", "null")
# A 429 is looked for with a short burst when the run has seen none.
BURST = 60


@pytest.fixture(scope="module")
def probes(deployment: Deployment) -> list[Exchange]:
    """One of each response the run can provoke, sent once for every check of this module."""
    d, a = deployment, deployment.user
    sent: list[Exchange] = []

    def list_call(**kwargs) -> None:
        sent.append(d.call("listUserSessions", **{"user_id": a, "token": d.token, **kwargs}))

    list_call()
    list_call(params={"page": 0})
    list_call(params={"page_size": "abc"})
    list_call(params={"contract_test_unknown": "1"})
    list_call(params={"page": "99999999999999999999999"})
    list_call(token=None)
    list_call(token="not-a-jwt")
    list_call(user_id=d.other_user)
    list_call(user_id="usr'contract\"test")
    list_call(user_id="u" * 65)
    list_call(user_id="usr_\u00e9")
    list_call(params={"page": "-1", "page_size": "1.5"})
    sent.append(d.call("revokeSession", token=d.token, user_id=a, session_id="sess_contract_test_nobody"))
    sent.append(d.call("revokeSession", token=d.token, user_id=a, session_id="sess'contract;test"))
    method, path = d.url("listUserSessions", user_id=a)
    unused = sorted(
        {m.upper() for m in HTTP_METHODS} - _methods_of(operation("listUserSessions")[1]) - {"HEAD"}
    )
    sent.append(d.send(unused[0], path, authorization=f"Bearer {d.token}"))
    sent.append(d.send("GET", "/contract-test/no-such-route", authorization=f"Bearer {d.token}"))
    for operation_id in ("checkHealth", "checkReadiness"):
        if _has_operation(operation_id):
            sent.append(d.call(operation_id))
    if d.minter is not None:
        stranger = f"usr_contract_{secrets.token_hex(4)}"
        list_call(user_id=stranger, token=d.minter.mint(stranger))
    for user in d.probes.values():  # in process: a 500, a 503 and a 429
        list_call(user_id=user, token=d.token_for(user))
    for request_id in (*SANE_IDS, *INSANE_IDS):
        list_call(headers=[("X-Request-ID", request_id)])
        list_call(token=None, headers=[("X-Request-ID", request_id)])
    for origin in ARBITRARY_ORIGINS:
        list_call(headers=[("Origin", origin)])
        list_call(token=None, headers=[("Origin", origin)])
        sent.append(
            d.send(
                "OPTIONS",
                path,
                headers=[
                    ("Origin", origin),
                    ("Access-Control-Request-Method", method),
                    ("Access-Control-Request-Headers", "authorization, x-request-id"),
                ],
            )
        )
    if not any(e.status == 429 for e in d.observed.exchanges):
        for _ in range(BURST):
            exchange = d.send(method, path, authorization=f"Bearer {d.token}", retry=False)
            if exchange.status == 429:
                break
    return sent


def _methods_of(path: str) -> set[str]:
    return {m.upper() for m in load_spec()["paths"][path] if m in HTTP_METHODS}


def _has_operation(operation_id: str) -> bool:
    try:
        operation(operation_id)
    except LookupError:
        return False
    return True


def judge(
    deployment: Deployment, rule: Callable[[Exchange], Iterable[str]], applies: Callable[[Exchange], bool]
) -> int:
    """Apply `rule` to every exchange of the run it `applies` to; fail with what it found. Returns how many
    exchanges were judged."""
    findings = Findings()
    judged = 0
    for exchange in deployment.observed.exchanges:
        if not applies(exchange):
            continue
        judged += 1
        findings.extend(list(rule(exchange)), exchange, prefix=f"{exchange.summary()}: ")
    findings.conclude()
    return judged


def _is_error(exchange: Exchange) -> bool:
    return exchange.status >= 400


def _has_body(exchange: Exchange) -> bool:
    return exchange.method != "HEAD" and exchange.status not in (204, 304)


@check("problems.media-type")
def test_errors_are_problems(deployment: Deployment, probes) -> None:
    def rule(exchange: Exchange) -> list[str]:
        return [v for v in problem_violations(exchange) if "differs from the HTTP status" not in v]

    judge(deployment, rule, lambda e: _is_error(e) and _has_body(e))


@check("problems.status")
def test_problem_status_is_the_http_status(deployment: Deployment, probes) -> None:
    def rule(exchange: Exchange) -> list[str]:
        body = exchange.json()
        if not isinstance(body, dict) or body.get("status") != exchange.status:
            status = body.get("status") if isinstance(body, dict) else None
            return [f"the problem's status is {status!r}, the HTTP status {exchange.status}"]
        return []

    judge(deployment, rule, lambda e: _is_error(e) and _has_body(e))


@check("problems.request-id")
def test_problem_request_id_is_the_header(deployment: Deployment, probes) -> None:
    def rule(exchange: Exchange) -> list[str]:
        body = exchange.json()
        header = exchange.headers.get("x-request-id")
        value = body.get("request_id") if isinstance(body, dict) else None
        if not value or value != header:
            return [f"the problem's request_id is {value!r}, X-Request-ID {header!r}"]
        return []

    judge(deployment, rule, lambda e: _is_error(e) and _has_body(e))


@check("headers.request-id-echo")
def test_request_id_is_echoed_when_sane(deployment: Deployment, probes) -> None:
    def rule(exchange: Exchange) -> list[str]:
        answered = exchange.headers.get("x-request-id")
        if not answered:
            return ["no X-Request-ID"]
        sent = next((v for k, v in exchange.request_headers if k.lower() == "x-request-id"), None)
        if sent is None:
            return []
        if SANE_REQUEST_ID.match(sent) and answered != sent:
            return [f"sent the sane X-Request-ID {sent!r}, got {answered!r} back"]
        if not SANE_REQUEST_ID.match(sent) and answered == sent:
            return [f"echoed the X-Request-ID {sent!r}, which is not sane"]
        if not SANE_REQUEST_ID.match(answered):
            return [f"answered the X-Request-ID {answered!r}, which is not sane"]
        return []

    judge(deployment, rule, lambda e: True)


@check("headers.no-store")
def test_every_response_is_no_store(deployment: Deployment, probes) -> None:
    def rule(exchange: Exchange) -> list[str]:
        directives = {
            d.strip().split("=", 1)[0].lower()
            for value in exchange.headers.get_list("cache-control")
            for d in value.split(",")
        }
        if "no-store" not in directives:
            return [f"Cache-Control is {exchange.headers.get('cache-control')!r}, without no-store"]
        return []

    judge(deployment, rule, lambda e: True)


@check("headers.retry-after")
def test_throttled_and_unavailable_say_when_to_retry(deployment: Deployment, probes) -> None:
    def rule(exchange: Exchange) -> list[str]:
        value = exchange.headers.get("retry-after")
        if value is None:
            return ["no Retry-After"]
        if not (value.strip().isdigit() or _parse_http_date(value) is not None):
            return [f"Retry-After {value!r} is neither delta-seconds nor an HTTP-date"]
        return []

    if not judge(deployment, rule, lambda e: e.status in (429, 503)):
        skip(
            f"no 429 or 503 among the run's {len(deployment.observed.exchanges)} responses: the deployment "
            "did not rate-limit the run"
        )


@check("problems.no-leak")
def test_no_body_shows_the_servers_internals(deployment: Deployment, probes) -> None:
    def rule(exchange: Exchange) -> list[str]:
        text = exchange.body.decode("utf-8", "replace").replace('\\"', '"')  # JSON-escaped quotes
        request = " ".join([exchange.url, *(v for _, v in exchange.request_headers)])
        request += exchange.request_body.decode("utf-8", "replace")
        found = []
        for leak in LEAKS:
            for match in leak.finditer(text):
                if match.group(0) not in request and _unquoted(match.group(0)) not in _unquoted(request):
                    found.append(f"the body shows {match.group(0)[:120]!r}")
                    break
        return found[:1]

    judge(deployment, rule, lambda e: bool(e.body))


@check("headers.cors")
def test_no_arbitrary_origin_with_credentials(deployment: Deployment, probes) -> None:
    def rule(exchange: Exchange) -> list[str]:
        allowed = exchange.headers.get("access-control-allow-origin")
        credentials = (exchange.headers.get("access-control-allow-credentials") or "").strip().lower()
        sent = next((v for k, v in exchange.request_headers if k.lower() == "origin"), None)
        if credentials == "true" and allowed is not None and allowed in {sent, "*", "null"}:
            return [f"Access-Control-Allow-Origin {allowed!r} with Access-Control-Allow-Credentials: true"]
        return []

    judge(deployment, rule, lambda e: True)


def _unquoted(text: str) -> str:
    from urllib.parse import unquote_plus

    return unquote_plus(text).replace('\\"', '"')


def _parse_http_date(value: str) -> object | None:
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
