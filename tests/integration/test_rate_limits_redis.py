"""Rate limits counted in Redis: one budget for every worker and instance, and requests that go on
unlimited, quickly, when Redis is down or does not answer.

The shared-budget tests need a Redis server (AUTIONAL_TEST_REDIS_URL, by default redis://127.0.0.1:6379/0);
where none answers they skip with the reason, and under CI=true they fail instead. Each test counts under
a key prefix of its own and deletes its keys afterwards. The outage tests need no Redis.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from typing import NoReturn

import coredis
import httpx
import pytest

from autional_sessions.db.url import redact
from autional_sessions.http.client_address import ClientAddress
from autional_sessions.http.rate_limits import ClientRateLimitMiddleware
from autional_sessions.security import rate_limiter
from autional_sessions.security.rate_limiter import Decision, RateLimits
from autional_sessions.testing import service_missing

REDIS_URL = os.environ.get("AUTIONAL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
LOGGER = "autional_sessions.rate_limits"


def _redis_unreachable(reason: str) -> NoReturn:
    service_missing(
        "Redis", f"Redis is not reachable at {redact(REDIS_URL)} ({reason}); set AUTIONAL_TEST_REDIS_URL"
    )


async def _ping() -> None:
    client = coredis.Redis.from_url(REDIS_URL)
    try:
        async with asyncio.timeout(3):
            await client.ping()
    finally:
        client.connection_pool.disconnect()


async def _delete_keys(prefix: str) -> None:
    client = coredis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(keys)
    finally:
        client.connection_pool.disconnect()


async def _count_keys(prefix: str) -> int:
    client = coredis.Redis.from_url(REDIS_URL)
    try:
        return len([key async for key in client.scan_iter(match=f"{prefix}:*")])
    finally:
        client.connection_pool.disconnect()


@pytest.fixture
def key_prefix() -> Iterator[str]:
    """A key prefix of this test's own on the test Redis, its keys deleted afterwards."""
    try:
        asyncio.run(_ping())
    except (coredis.exceptions.RedisError, OSError, TimeoutError) as exc:
        _redis_unreachable(f"{type(exc).__name__}: {exc}")
    prefix = f"autional-test-{uuid.uuid4().hex}"
    try:
        yield prefix
    finally:
        asyncio.run(_delete_keys(prefix))


def run_checks(limits: RateLimits, kind: str, identity: str, times: int) -> list[Decision | None]:
    async def run() -> list[Decision | None]:
        try:
            return [await limits.check(kind, identity) for _ in range(times)]
        finally:
            await limits.close()

    return asyncio.run(run())


def test_the_budget_counts_down_then_refuses_on_redis(key_prefix):
    limits = RateLimits("3/minute", redis_url=REDIS_URL, key_prefix=key_prefix)

    decisions = run_checks(limits, "ip", "203.0.113.7", 4)

    assert [(d.allowed, d.remaining) for d in decisions if d] == [(True, 2), (True, 1), (True, 0), (False, 0)]
    assert decisions[-1] is not None and int(decisions[-1].headers()["Retry-After"]) >= 1
    assert asyncio.run(_count_keys(key_prefix)) == 1  # every key under the prefix, none elsewhere


def test_two_instances_on_one_redis_share_one_budget(key_prefix):
    # What several worker processes, or several instances of the service, need: one limit, not one each.
    first = RateLimits("3/minute", redis_url=REDIS_URL, key_prefix=key_prefix)
    second = RateLimits("3/minute", redis_url=REDIS_URL, key_prefix=key_prefix)

    async def alternate() -> list[Decision | None]:
        try:
            return [await limits.check("sub", "usr_1") for limits in (first, second, first, second)]
        finally:
            await first.close()
            await second.close()

    decisions = asyncio.run(alternate())

    assert [(d.allowed, d.remaining) for d in decisions if d] == [(True, 2), (True, 1), (True, 0), (False, 0)]


def test_requests_asking_in_one_loop_iteration_share_one_round_trip_and_are_counted_in_order(key_prefix):
    limits = RateLimits("3/minute", redis_url=REDIS_URL, key_prefix=key_prefix)

    async def at_once() -> tuple[list[list[Decision | None]], int]:
        counter = limits._limiter_for_running_loop()
        script, calls = counter._script, []

        async def counted(**arguments):
            calls.append(arguments["keys"])
            return await script(**arguments)

        counter._script = counted
        try:
            keys = [("ip", "203.0.113.7"), ("sub", "usr_1")]
            found = await asyncio.gather(*(limits.check_many(keys) for _ in range(4)))
            return found, len(calls)
        finally:
            await limits.close()

    found, calls = asyncio.run(at_once())

    assert calls == 1
    # One client's requests, counted one after the other within the call: the fourth is over the limit.
    assert [[d.allowed for d in decisions if d] for decisions in found] == [[True, True]] * 3 + [
        [False, False]
    ]
    assert [decisions[0].remaining for decisions in found if decisions[0]] == [2, 1, 0, 0]


def _redis_limits(limit: str = "5/minute") -> RateLimits:
    # No Redis needed where the script is replaced: a counter connects only when it calls it.
    return RateLimits(limit, redis_url=REDIS_URL, key_prefix=f"autional-test-{uuid.uuid4().hex}")


async def _hold_the_first_call(limits: RateLimits, first_call_fails: bool) -> tuple[list, list[int]]:
    """One check whose script call is held in flight while three more ask, then let go: the checks'
    decisions and the number of Redis keys of each call made."""
    counter = limits._limiter_for_running_loop()
    script, calls, release = counter._script, [], asyncio.Event()

    async def held(**arguments):
        calls.append(len(arguments["keys"]))
        if len(calls) == 1:
            await release.wait()
            if first_call_fails:
                raise coredis.exceptions.ConnectionError("the connection was reset")
        return await script(**arguments)

    counter._script = held
    try:
        async with asyncio.timeout(5):  # a broken sender fails the test, rather than hang it
            first = asyncio.ensure_future(limits.check("ip", "203.0.113.7"))
            while not calls:
                await asyncio.sleep(0.001)
            later = [asyncio.ensure_future(limits.check("ip", "203.0.113.7")) for _ in range(3)]
            for _ in range(10):  # time enough for a call of their own to start, were one to
                await asyncio.sleep(0)
            assert calls == [2]
            release.set()
            return [await first] + [await check for check in later], calls
    finally:
        await limits.close()


def test_requests_asking_while_a_call_is_in_flight_go_together_in_the_next(key_prefix):
    limits = RateLimits("3/minute", redis_url=REDIS_URL, key_prefix=key_prefix)

    decisions, calls = asyncio.run(_hold_the_first_call(limits, first_call_fails=False))

    assert calls == [2, 6]  # one call in flight at a time: the three that waited share the second
    assert [(d.allowed, d.remaining) for d in decisions if d] == [(True, 2), (True, 1), (True, 0), (False, 0)]


def test_when_the_call_in_flight_fails_the_requests_waiting_for_the_next_go_through_at_once(caplog):
    # Without asking Redis again: the next call would likely wait out the same failure, a second timeout.
    limits = _redis_limits("1/minute")
    caplog.set_level(logging.WARNING, logger=LOGGER)

    decisions, calls = asyncio.run(_hold_the_first_call(limits, first_call_fails=True))

    assert calls == [2]
    assert decisions == [None, None, None, None]
    assert len([r for r in caplog.records if r.name == LOGGER]) == 1


def test_when_a_call_fails_the_hits_of_another_cost_in_its_round_go_through_too():
    # Hits of different costs asked together make one call each, one after the other; the first's
    # failure is theirs too, rather than a wait for nothing (or for a second timeout).
    limits = _redis_limits()

    async def run() -> tuple[list[Decision | None], int]:
        counter = limits._limiter_for_running_loop()
        calls = 0

        async def failing(**arguments):
            nonlocal calls
            calls += 1
            raise coredis.exceptions.ConnectionError("the connection was reset")

        counter._script = failing
        try:
            async with asyncio.timeout(2):
                found = await asyncio.gather(
                    limits.check("sub", "usr_1"), limits.check("sub", "usr_1", cost=5)
                )
            return found, calls
        finally:
            await limits.close()

    assert asyncio.run(run()) == ([None, None], 1)


async def _allowed(**arguments) -> list[list[int]]:
    """A script's answer without Redis: every key allowed, its first request of a one-minute window."""
    return [[1, 0, 0, 1, 60_000]] * (len(arguments["keys"]) // 2)


def test_a_request_waits_at_most_the_timeout_though_it_asked_while_a_slow_call_was_in_flight(monkeypatch):
    monkeypatch.setattr(rate_limiter, "STORAGE_TIMEOUT_SECONDS", 0.4)
    limits = _redis_limits()

    async def run() -> tuple[Decision | None, Decision | None, float]:
        counter = limits._limiter_for_running_loop()
        calls = 0

        async def slow_then_silent(**arguments):
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.3 if calls == 1 else 60)  # the first answers late, the second never
            return await _allowed(**arguments)

        counter._script = slow_then_silent
        try:
            first = asyncio.ensure_future(limits.check("sub", "usr_1"))
            await asyncio.sleep(0.05)  # the first call is in flight
            asked = time.monotonic()
            second = await limits.check("sub", "usr_1")
            return await first, second, time.monotonic() - asked
        finally:
            await limits.close()

    first, second, waited = asyncio.run(run())

    assert first is not None and first.allowed
    assert second is None  # its call ran out of time: unlimited
    # 0.35 s left of its 0.4 s when it asked; a timeout of its call's own would have made it 0.65 s.
    assert waited < 0.5


def test_a_request_that_gives_up_waiting_leaves_the_others_of_its_call_their_answers():
    limits = _redis_limits()

    async def run() -> list[Decision | None]:
        counter = limits._limiter_for_running_loop()
        release = asyncio.Event()

        async def held(**arguments):
            await release.wait()
            return await _allowed(**arguments)

        counter._script = held
        try:
            async with asyncio.timeout(5):
                checks = [asyncio.ensure_future(limits.check("sub", f"usr_{n}")) for n in range(3)]
                await asyncio.sleep(0.01)  # all three in the one call, in flight
                checks[1].cancel()  # its client went away
                release.set()
                return [await checks[0], await checks[2]]
        finally:
            await limits.close()

    assert [d is not None and d.allowed for d in asyncio.run(run())] == [True, True]


def test_a_sender_cancelled_before_it_ran_leaves_no_request_waiting_and_the_next_is_answered():
    # The loop's shutdown cancels every task, a counter's sender among them, perhaps before its first step.
    limits = _redis_limits()

    async def run() -> tuple[bool, bool, Decision | None]:
        counter = limits._limiter_for_running_loop()
        counter._script = _allowed
        try:
            async with asyncio.timeout(5):
                asked = asyncio.ensure_future(limits.check("sub", "usr_1"))
                await asyncio.sleep(0)  # it has asked; the sender it made has not run yet
                assert counter._sender is not None
                counter._sender.cancel()
                asked_meanwhile = asyncio.ensure_future(limits.check("sub", "usr_1"))
                await asyncio.wait([asked, asked_meanwhile])
                return asked.cancelled(), asked_meanwhile.cancelled(), await limits.check("sub", "usr_1")
        finally:
            await limits.close()

    asked, asked_meanwhile, later = asyncio.run(run())
    assert asked and asked_meanwhile  # given up on, not left waiting
    assert later is not None and later.allowed


REQUEST_VALUE: contextvars.ContextVar[str] = contextvars.ContextVar("request_value", default="none")


def test_the_calls_to_redis_run_in_a_context_of_their_own_not_the_first_requests():
    limits = _redis_limits()
    seen = []

    async def run() -> None:
        counter = limits._limiter_for_running_loop()

        async def looking(**arguments):
            seen.append(REQUEST_VALUE.get())
            return await _allowed(**arguments)

        counter._script = looking

        async def request() -> None:
            REQUEST_VALUE.set("the first request's")
            await limits.check("sub", "usr_1")

        try:
            async with asyncio.timeout(5):
                await asyncio.ensure_future(request())
        finally:
            await limits.close()

    asyncio.run(run())
    assert seen == ["none"]


def test_one_instance_keeps_counting_from_one_event_loop_to_the_next(key_prefix):
    # A Redis client belongs to the loop that opened it; the limiter makes one for each loop it runs on.
    limits = RateLimits("3/minute", redis_url=REDIS_URL, key_prefix=key_prefix)

    decisions = [*run_checks(limits, "ip", "203.0.113.7", 2), *run_checks(limits, "ip", "203.0.113.7", 2)]

    assert [d.allowed for d in decisions if d] == [True, True, True, False]


def test_kinds_and_identities_are_separate_budgets_on_redis(key_prefix):
    limits = RateLimits("1/minute", redis_url=REDIS_URL, key_prefix=key_prefix)

    async def run() -> list[bool]:
        try:
            answers = [
                await limits.check("ip", "usr_1"),
                await limits.check("sub", "usr_1"),
                await limits.check("sub", "usr_2"),
                await limits.check("sub", "usr_1"),
            ]
        finally:
            await limits.close()
        return [a is not None and a.allowed for a in answers]

    assert asyncio.run(run()) == [True, True, True, False]


# Outages: these need no Redis at all.


def _assert_fails_open_quickly(url: str, caplog: pytest.LogCaptureFixture) -> None:
    limits = RateLimits("1/minute", redis_url=url)
    caplog.set_level(logging.WARNING, logger=LOGGER)

    started = time.monotonic()
    decisions = run_checks(limits, "sub", "usr_secret_identity", 3)
    elapsed = time.monotonic() - started

    assert decisions == [None, None, None]
    assert elapsed < 2
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "unlimited" in warnings[0].getMessage()
    assert "usr_secret_identity" not in caplog.text
    assert "hunter2" not in caplog.text


def test_a_refused_connection_lets_requests_through_and_warns_once(caplog):
    _assert_fails_open_quickly("redis://:hunter2@127.0.0.1:1/0", caplog)


def test_a_redis_that_never_answers_lets_requests_through_within_the_timeout(caplog):
    # The kernel completes the TCP handshake on a listening socket nobody accepts from, and nothing is
    # ever answered: a black hole, as a hung Redis or a dropped route looks to a client.
    with socket.create_server(("127.0.0.1", 0)) as black_hole:
        port = black_hole.getsockname()[1]
        _assert_fails_open_quickly(f"redis://:hunter2@127.0.0.1:{port}/0", caplog)


@pytest.mark.parametrize(("retry_seconds", "attempts"), [(rate_limiter.STORAGE_RETRY_SECONDS, 1), (0, 3)])
def test_after_a_failure_the_storage_rests_and_the_warning_comes_at_most_every_30_seconds(
    caplog, monkeypatch, retry_seconds, attempts
):
    monkeypatch.setattr(rate_limiter, "STORAGE_RETRY_SECONDS", retry_seconds)
    limits = RateLimits("1/minute", redis_url="redis://127.0.0.1:1/0")
    caplog.set_level(logging.WARNING, logger=LOGGER)
    asked = 0
    limiter_for_running_loop = limits._limiter_for_running_loop

    def counting() -> object:
        nonlocal asked
        asked += 1
        return limiter_for_running_loop()

    monkeypatch.setattr(limits, "_limiter_for_running_loop", counting)

    assert run_checks(limits, "ip", "203.0.113.7", 3) == [None, None, None]
    assert asked == attempts
    assert len([r for r in caplog.records if r.name == LOGGER]) == 1


def test_the_middleware_lets_requests_through_without_headers_while_redis_is_down():
    async def hello(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello"})

    limits = RateLimits("1/minute", redis_url="redis://127.0.0.1:1/0")
    app = ClientRateLimitMiddleware(hello, limits=limits, client_address=ClientAddress([]))

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [await client.get("/") for _ in range(3)]

    responses = asyncio.run(run())

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert "ratelimit-remaining" not in responses[-1].headers


def test_two_app_instances_on_one_redis_share_a_subjects_budget(key_prefix, settings, database, auth_headers):
    from autional_sessions.http.app import create_app
    from tests.factories import add_user

    add_user("usr_shared")
    apps = [
        create_app(settings, rate_limits=RateLimits("3/minute", redis_url=REDIS_URL, key_prefix=key_prefix))
        for _ in range(2)
    ]
    headers = auth_headers("usr_shared")

    async def alternate() -> list[int]:
        statuses = []
        for n in range(4):
            transport = httpx.ASGITransport(app=apps[n % 2], client=(f"192.0.2.{n}", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                statuses.append(
                    (await client.get("/sessions/user/usr_shared/sessions", headers=headers)).status_code
                )
        return statuses

    assert asyncio.run(alternate()) == [200, 200, 200, 429]
