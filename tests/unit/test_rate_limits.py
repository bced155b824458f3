"""Rate limits counted in process memory, and the two middlewares that apply them to requests."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from starlette.types import Receive, Scope, Send

from autional_sessions.config import parse_limit
from autional_sessions.http.client_address import ClientAddress
from autional_sessions.http.rate_limits import ClientRateLimitMiddleware, SubjectRateLimitMiddleware
from autional_sessions.problems.factory import ProblemError
from autional_sessions.security.rate_limiter import (
    Decision,
    RateLimits,
    _decision,
    _MemoryCounter,
    _RedisCounter,
    choose,
)

RATE_LIMIT_HEADERS = {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"}


def checks(limits: RateLimits, kind: str, identity: str, times: int) -> list[Decision | None]:
    async def run() -> list[Decision | None]:
        return [await limits.check(kind, identity) for _ in range(times)]

    return asyncio.run(run())


def test_the_budget_counts_down_then_refuses_with_a_retry_after():
    decisions = checks(RateLimits("3/minute"), "ip", "203.0.113.7", 5)

    assert all(d is not None for d in decisions)
    assert [(d.allowed, d.limit, d.remaining) for d in decisions] == [
        (True, 3, 2),
        (True, 3, 1),
        (True, 3, 0),
        (False, 3, 0),
        (False, 3, 0),
    ]
    assert all(0 <= d.reset_after <= 60 for d in decisions)
    refused = decisions[-1].headers()
    assert refused["RateLimit-Limit"] == "3"
    assert refused["RateLimit-Remaining"] == "0"
    assert int(refused["Retry-After"]) >= 1
    assert int(refused["RateLimit-Reset"]) <= int(refused["Retry-After"])


def test_allowed_decisions_carry_the_three_headers_and_no_retry_after():
    (decision,) = checks(RateLimits("10/second"), "sub", "usr_1", 1)

    assert decision is not None
    assert set(decision.headers()) == {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"}


def test_retry_after_is_at_least_one_second_even_when_the_window_is_about_to_free():
    decision = Decision(allowed=False, limit=1, remaining=0, reset_after=0)

    assert decision.retry_after == 1
    assert decision.headers()["Retry-After"] == "1"
    assert decision.headers()["RateLimit-Reset"] == "0"


def test_kinds_and_identities_have_budgets_of_their_own():
    limits = RateLimits("1/minute")

    async def run() -> list[bool]:
        answers = [
            await limits.check("ip", "203.0.113.7"),
            await limits.check("ip", "203.0.113.8"),
            await limits.check("sub", "203.0.113.7"),
            await limits.check("ip", "203.0.113.7"),
        ]
        return [a is not None and a.allowed for a in answers]

    assert asyncio.run(run()) == [True, True, True, False]


def test_counts_in_memory_outlive_the_event_loop_they_were_made_on():
    limits = RateLimits("2/minute")

    first = checks(limits, "ip", "203.0.113.7", 2)
    second = checks(limits, "ip", "203.0.113.7", 1)

    assert [d.allowed for d in first + second if d] == [True, True, False]


@pytest.mark.parametrize(
    "limit",
    ["", "lots", "120", "120/fortnight", "0/minute", "-1/minute", "minute/120", "10/second;100/minute"],
)
def test_a_malformed_limit_is_refused_with_an_example(limit):
    with pytest.raises(ValueError, match=r"e\.g\. 120/minute") as raised:
        RateLimits(limit)
    assert repr(limit) in str(raised.value)


@pytest.mark.parametrize("limit", ["120/minute", "120 per minute", "10/second", "1000/2hours", "5/DAY"])
def test_the_limits_notation_is_accepted(limit):
    RateLimits(limit)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "redis://", "redis://host:port/0", "redis://h:0/0"]
)
def test_a_malformed_redis_url_is_refused(url):
    with pytest.raises(ValueError, match="Redis URL"):
        RateLimits("1/minute", redis_url=url)


def test_the_refusal_does_not_show_the_redis_password():
    with pytest.raises(ValueError) as raised:
        RateLimits("1/minute", redis_url="http://:hunter2@127.0.0.1:6379/0")
    assert "hunter2" not in str(raised.value)


# The middlewares, around a tiny app. A stand-in for Connexion's security middleware puts the subject
# of the X-Test-User header where Connexion puts a verified token's subject.


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


class FakeSecurity:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user = dict(scope["headers"]).get(b"x-test-user")
        if user:
            scope.setdefault("extensions", {}).setdefault("connexion_context", {})["user"] = user.decode()
        await self.app(scope, receive, send)


def stack(
    *,
    ip_limits: RateLimits,
    sub_limits: RateLimits,
    client_address: ClientAddress | None = None,
) -> Any:
    return ClientRateLimitMiddleware(
        FakeSecurity(SubjectRateLimitMiddleware(hello, limits=sub_limits)),
        limits=ip_limits,
        client_address=client_address or ClientAddress([]),
    )


def get(app: Any, times: int = 1, *, peer: str = "203.0.113.7", **headers: str) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, client=(peer, 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [await client.get("/", headers=headers) for _ in range(times)]

    return asyncio.run(run())


def test_allowed_responses_carry_the_budget_of_the_client_address():
    app = stack(ip_limits=RateLimits("5/minute"), sub_limits=RateLimits("5/minute"))

    responses = get(app, 2)

    assert [r.status_code for r in responses] == [200, 200]
    assert set(responses[-1].headers) >= RATE_LIMIT_HEADERS
    assert responses[-1].headers["RateLimit-Limit"] == "5"
    assert responses[-1].headers["RateLimit-Remaining"] == "3"
    assert "retry-after" not in responses[-1].headers


def test_a_client_address_past_its_limit_is_refused_with_a_rate_limited_problem():
    app = stack(ip_limits=RateLimits("2/minute"), sub_limits=RateLimits("5/minute"))
    get(app, 2)

    with pytest.raises(ProblemError) as raised:
        get(app)

    error = raised.value
    assert error.type_name == "rate-limited"
    assert "client address" in error.detail
    assert error.retry_after is not None and error.retry_after >= 1
    assert error.headers["Retry-After"] == str(error.retry_after)
    assert error.headers["RateLimit-Remaining"] == "0"
    assert error.headers["RateLimit-Limit"] == "2"


def test_clients_behind_a_trusted_proxy_are_counted_by_their_own_address():
    app = stack(
        ip_limits=RateLimits("1/minute"),
        sub_limits=RateLimits("5/minute"),
        client_address=ClientAddress(["10.0.0.0/8"]),
    )

    get(app, peer="10.0.0.2", **{"X-Forwarded-For": "203.0.113.7"})
    get(app, peer="10.0.0.2", **{"X-Forwarded-For": "203.0.113.8"})
    with pytest.raises(ProblemError):
        get(app, peer="10.0.0.3", **{"X-Forwarded-For": "203.0.113.7"})


def test_a_token_subject_past_its_limit_is_refused_from_any_address():
    app = stack(ip_limits=RateLimits("100/minute"), sub_limits=RateLimits("2/minute"))
    get(app, peer="203.0.113.7", **{"X-Test-User": "usr_1"})
    get(app, peer="203.0.113.8", **{"X-Test-User": "usr_1"})

    with pytest.raises(ProblemError) as raised:
        get(app, peer="203.0.113.9", **{"X-Test-User": "usr_1"})

    assert raised.value.type_name == "rate-limited"
    assert "user" in raised.value.detail
    assert raised.value.headers["RateLimit-Limit"] == "2"
    assert raised.value.retry_after is not None and raised.value.retry_after >= 1
    assert [r.status_code for r in get(app, peer="203.0.113.9", **{"X-Test-User": "usr_2"})] == [200]


def test_requests_without_a_subject_are_not_counted_by_subject():
    sub_limits = RateLimits("1/minute")
    app = stack(ip_limits=RateLimits("100/minute"), sub_limits=sub_limits)

    responses = get(app, 3)

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert responses[-1].headers["RateLimit-Limit"] == "100"


@pytest.mark.parametrize(
    ("ip_limit", "sub_limit", "expected_limit", "expected_remaining"),
    [("10/minute", "3/minute", "3", "2"), ("3/minute", "10/minute", "3", "2")],
)
def test_the_response_tells_of_the_limit_that_runs_out_first(
    ip_limit, sub_limit, expected_limit, expected_remaining
):
    app = stack(ip_limits=RateLimits(ip_limit), sub_limits=RateLimits(sub_limit))

    (response,) = get(app, **{"X-Test-User": "usr_1"})

    assert response.headers["RateLimit-Limit"] == expected_limit
    assert response.headers["RateLimit-Remaining"] == expected_remaining
    assert len(response.headers.get_list("RateLimit-Remaining")) == 1


def test_when_the_storage_is_unavailable_requests_go_through_without_headers(monkeypatch):
    limits = RateLimits("1/minute")

    async def unavailable(keys: list[tuple[str, str]], cost: int) -> list[None]:
        return [None] * len(keys)  # what the limiter answers while its storage is down

    monkeypatch.setattr(limits, "count_now", lambda keys: None)  # as for counts kept in Redis
    monkeypatch.setattr(limits, "_hit", unavailable)
    app = stack(ip_limits=limits, sub_limits=limits)

    responses = get(app, 3, **{"X-Test-User": "usr_1"})

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert not RATE_LIMIT_HEADERS & set(responses[-1].headers)


def test_scopes_other_than_http_pass_untouched():
    seen: list[str] = []

    async def lifespan_app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    limits = RateLimits("1/minute")
    app = ClientRateLimitMiddleware(
        SubjectRateLimitMiddleware(lifespan_app, limits=limits),
        limits=limits,
        client_address=ClientAddress([]),
    )

    async def run() -> None:
        for _ in range(3):
            await app({"type": "lifespan"}, _never_called, _never_called)

    asyncio.run(run())
    assert seen == ["lifespan"] * 3


async def _never_called(*_args: Any) -> Any:
    raise AssertionError("a pass-through must not touch receive or send")


def test_at_a_windows_edge_the_previous_windows_count_is_weighted_by_what_is_left_of_it():
    now = [1000.0]
    counter = _MemoryCounter(parse_limit("4/minute"), clock=lambda: now[0])

    def hits(times: int) -> list[bool]:
        return [d.allowed for d in counter.hit([("sub", "k")] * times, 1) if d]

    assert hits(1) == [True]  # the first hit starts the window
    now[0] += 59.0  # the rest of the budget at the very end of the window
    assert hits(4) == [True, True, True, False]
    now[0] += 1.5  # just past the edge: the previous window's 4 still weigh 3.97, so one more fits
    assert hits(2) == [True, False]
    now[0] += 29.5  # half of the previous window left: 2 of its 4 still count, besides the 1 of this one
    assert hits(2) == [True, False]
    now[0] += 60.0  # a window later: the previous window (2) is half gone
    assert hits(4) == [True, True, True, False]


@pytest.mark.parametrize("allowed", [True, False])
def test_a_decision_s_raw_headers_are_its_headers_as_an_asgi_message_carries_them(allowed):
    decision = Decision(allowed=allowed, limit=120, remaining=0 if not allowed else 7, reset_after=0)

    assert decision.raw_headers() == [
        (name.lower().encode(), value.encode()) for name, value in decision.headers().items()
    ]


@settings(max_examples=300, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=50),
    previous=st.integers(min_value=0, max_value=60),
    current=st.integers(min_value=0, max_value=60),
    elapsed=st.floats(min_value=0, max_value=59.999),
    cost=st.integers(min_value=1, max_value=3),
)
def test_the_memory_counter_decides_with_the_arithmetic_of_the_redis_script_s_answers(
    limit, previous, current, elapsed, cost
):
    # The counter in memory inlines `_decision`, which turns the Lua script's answers into decisions:
    # both must tell a client the same, for any state of a key's two windows.
    item = parse_limit(f"{limit}/minute")
    start = 1000.0
    counter = _MemoryCounter(item, clock=lambda: start + elapsed)
    counter._sweep_at = float("inf")
    counter._windows[("sub", "k")] = [start, previous, current]

    (decision,) = counter.hit([("sub", "k")], cost)

    expiry, now = item.get_expiry(), start + elapsed  # times as the counter computes them, to the last bit
    previous_ttl = start + expiry - now if previous else 0.0
    allowed = cost <= limit and math.floor(previous * previous_ttl / expiry) + current + cost <= limit
    counted = current + cost if allowed else current
    assert decision == _decision(item, allowed, previous, previous_ttl, counted, start + 2 * expiry - now)


_WINDOW = st.tuples(st.integers(min_value=0, max_value=8), st.integers(min_value=0, max_value=8))


@settings(max_examples=300, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=6),
    windows=st.lists(_WINDOW, min_size=0, max_size=3),
    elapsed=st.floats(min_value=0, max_value=59.999),
)
# Two keys left with the same remaining budget and different times to reset: the subject's is kept.
@example(limit=6, windows=[(0, 3), (4, 1)], elapsed=30.0)
def test_a_request_s_count_in_memory_answers_as_choose_does_of_each_key_s_decision(limit, windows, elapsed):
    # `count` keeps only the decision a request's responses carry, without making the others; it must
    # keep the one `choose` keeps of every key's decision, and count every key as `hit` does.
    item = parse_limit(f"{limit}/minute")
    start = 1000.0
    keys = [("ip" if i == 0 else "sub", f"k{i}") for i in range(len(windows))]

    def counter() -> _MemoryCounter:
        made = _MemoryCounter(item, clock=lambda: start + elapsed)
        made._sweep_at = float("inf")
        for key, (previous, current) in zip(keys, windows, strict=True):
            made._windows[key] = [start, previous, current]
        return made

    by_request, by_key = counter(), counter()

    assert by_request.count(keys, 1) == choose(by_key.hit(keys, 1))
    assert by_request._windows == by_key._windows


def test_choose_keeps_the_first_refusal_else_the_budget_that_runs_out_first():
    open_ = Decision(allowed=True, limit=10, remaining=5, reset_after=3)
    tight = Decision(allowed=True, limit=10, remaining=1, reset_after=9)
    tight_too = Decision(allowed=True, limit=5, remaining=1, reset_after=2)
    refused = Decision(allowed=False, limit=10, remaining=0, reset_after=4)
    refused_too = Decision(allowed=False, limit=5, remaining=0, reset_after=1)

    assert choose([open_, tight]) == (-1, tight)
    assert choose([tight, open_]) == (-1, tight)
    assert choose([tight, tight_too]) == (-1, tight_too)  # a tie: the later key's (the subject's)
    assert choose([tight, refused]) == (1, refused)
    assert choose([refused, refused_too]) == (0, refused)  # both refuse: the first (the address)
    assert choose([None, tight]) == (-1, tight)  # a key whose storage is unavailable goes unlimited
    assert choose([None, None]) == (-1, None)
    assert choose([]) == (-1, None)


@pytest.mark.parametrize("identity", ["203.0.113.7", "2001:db8::1", "usr_0000001", "a/b c", "ünïcode"])
def test_redis_keys_are_limits_own_names_for_a_key_within_one_hash_tag(identity):
    # The counter builds `limits`' name for a key (`item.key_for`) from its parts, worked out once: a
    # release of `limits` that names keys otherwise must fail here, not split a budget between
    # instances of two versions during a rolling upgrade.
    item = parse_limit("120/minute")
    loop = asyncio.new_event_loop()
    try:  # connects only when used
        counter = _RedisCounter("redis://127.0.0.1:6379/0", "prefix", item, loop)
    finally:
        loop.close()

    name = f"prefix:{{{item.key_for('sub', identity)}}}"
    assert counter.redis_keys([("sub", identity)]) == [f"{name}/-1", name]
