"""Outages: a database that is down or unreachable gets a quick 503 with Retry-After, never a hang, a
stack trace or a partial 200; when it comes back the same server process serves again, unrestarted.

PostgreSQL is cut off through a TCP proxy in front of it (other test runs share the real server, so it
is never stopped); SQLite through a lock held on its file.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import httpx
import pytest

from autional_sessions.db.maintenance import open_database
from autional_sessions.db.migrations import migrate
from autional_sessions.db.statements import Statement
from autional_sessions.db.store import open_store
from autional_sessions.http.app import create_app
from autional_sessions.testing import make_settings
from tests.factories import add_session, add_user
from tests.postgres.support import (
    TcpProxy,
    postgres_only,
    running_server,
    running_statements,
    sqlite_only,
    wait_until_async,
)

USER = "usr_outage01"
CONNECT_TIMEOUT = 2  # seconds; also how long a stalled statement's retry waits to connect
POOL_TIMEOUT = 2
POOL_SIZE = 4
RETRY_AFTER = 3
STATEMENT_TIMEOUT_MS = 1000
# How long the server waits for an answer to a statement: a second past the statement timeout.
STATEMENT_PATIENCE = STATEMENT_TIMEOUT_MS / 1000 + 1
# "Within a few seconds": the longest legitimate wait is a pool slot, then a connect attempt.
PATIENCE = POOL_TIMEOUT + CONNECT_TIMEOUT + 1.5


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == str(RETRY_AFTER)
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"].endswith("/service-unavailable")
    assert body["retry_after"] == RETRY_AFTER
    assert "Traceback" not in response.text and "asyncpg" not in response.text


@pytest.fixture
def user_with_sessions(database) -> list[str]:
    add_user(USER)
    return [add_session(f"sess_outage_{i:02d}", USER).id for i in range(3)]


@pytest.fixture
def proxied_server(database_url, user_with_sessions, tmp_path):
    target = urlparse(database_url)
    proxy = TcpProxy(target.hostname, target.port or 5432)
    env = {
        "AUTIONAL_DB_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
        "AUTIONAL_DB_POOL_TIMEOUT": str(POOL_TIMEOUT),
        "AUTIONAL_DB_POOL_SIZE": str(POOL_SIZE),
        "AUTIONAL_RETRY_AFTER": str(RETRY_AFTER),
        "AUTIONAL_DB_STATEMENT_TIMEOUT_MS": str(STATEMENT_TIMEOUT_MS),
    }
    try:
        with running_server(proxy.url_for(database_url), tmp_path / "server.log", env=env) as server:
            yield proxy, server
    finally:
        proxy.close()


def get_page(server, headers) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    # Far above every bound under test: a hang fails the test after 30 s instead of blocking it.
    response = httpx.get(f"{server.url}/sessions/user/{USER}/sessions", headers=headers, timeout=30)
    return response, time.monotonic() - started


def concurrently(server, headers, n: int) -> list[tuple[httpx.Response, float]]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: get_page(server, headers), range(n)))


@postgres_only
@pytest.mark.slow
def test_postgresql_outage_answers_503_quickly_and_the_same_process_recovers(
    proxied_server, user_with_sessions, auth_headers
):
    proxy, server = proxied_server
    headers = auth_headers(USER)
    # Fill the pool: every one of these connections dies in the outage.
    before = concurrently(server, headers, POOL_SIZE)
    assert {r.status_code for r, _ in before} == {200}
    expected = sorted(item["id"] for item in before[0][0].json()["items"])
    assert expected == sorted(user_with_sessions)

    # A restart or failover too quick to see: every pooled connection is dead, the server is back. The
    # first request after it is served all the same, on a new connection.
    proxy.cut("refuse")
    proxy.restore()
    after_blip, _ = get_page(server, headers)
    assert after_blip.status_code == 200, after_blip.text
    concurrently(server, headers, POOL_SIZE)  # fill the pool again

    # The server went away: live connections dropped, new ones closed at once.
    proxy.cut("refuse")
    down = [get_page(server, headers) for _ in range(3)] + concurrently(server, headers, POOL_SIZE * 2)
    for response, _ in down:
        assert_unavailable(response)
    slowest_refused = max(elapsed for _, elapsed in down)
    assert slowest_refused < PATIENCE

    proxy.restore()
    # The very first request after the database is back succeeds: dead pooled connections are dropped.
    back, recovery = get_page(server, headers)
    assert back.status_code == 200, back.text
    assert sorted(item["id"] for item in back.json()["items"]) == expected
    refilled = concurrently(server, headers, POOL_SIZE)
    assert {r.status_code for r, _ in refilled} == {200}

    # The host became unreachable: connects hang until the connect timeout. As many requests as the
    # pool has slots connect side by side, each answered within one connect timeout, not one after the
    # other.
    proxy.cut("blackhole")
    unreachable = concurrently(server, headers, POOL_SIZE)
    for response, _ in unreachable:
        assert_unavailable(response)
    slowest_unreachable = max(elapsed for _, elapsed in unreachable)
    assert slowest_unreachable < CONNECT_TIMEOUT + 1.5

    proxy.restore()
    again, second_recovery = get_page(server, headers)
    assert again.status_code == 200, again.text
    concurrently(server, headers, POOL_SIZE)

    # The server froze: every connection stays open, nothing comes back, not even to a cancel. The
    # server's own statement timeout cannot fire; the client's deadline does, then the one retry's
    # connect timeout.
    proxy.cut("stall")
    frozen = concurrently(server, headers, POOL_SIZE)
    for response, _ in frozen:
        assert_unavailable(response)
    slowest_frozen = max(elapsed for _, elapsed in frozen)
    assert slowest_frozen < STATEMENT_PATIENCE + CONNECT_TIMEOUT + 1.5

    proxy.restore()
    thawed, third_recovery = get_page(server, headers)
    assert thawed.status_code == 200, thawed.text
    assert server.process.poll() is None, "the server process must survive the outages"
    print(
        f"\noutage timings: refused 503 in <= {slowest_refused:.3f}s, "
        f"unreachable 503 in <= {slowest_unreachable:.3f}s (connect timeout {CONNECT_TIMEOUT}s), "
        f"frozen 503 in <= {slowest_frozen:.3f}s (statement patience {STATEMENT_PATIENCE:g}s), "
        f"first request after each restore 200 in {recovery:.3f}s, {second_recovery:.3f}s, {third_recovery:.3f}s"
    )


@postgres_only
@pytest.mark.slow
def test_every_one_of_200_concurrent_requests_to_an_unreachable_database_gets_its_503_within_the_bounds(
    proxied_server, user_with_sessions, auth_headers
):
    """One worker, a pool of POOL_SIZE, 200 requests at once: none waits behind the others' timeouts."""
    proxy, server = proxied_server
    headers = auth_headers(USER)
    assert get_page(server, headers)[0].status_code == 200

    async def one(client: httpx.AsyncClient) -> tuple[httpx.Response, float]:
        started = time.monotonic()
        response = await client.get(f"/sessions/user/{USER}/sessions", headers=headers)
        return response, time.monotonic() - started

    async def flood() -> list[tuple[httpx.Response, float]]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client:
            return await asyncio.gather(*(one(client) for _ in range(200)))

    # The same flood with the database up: what this machine takes to carry 200 requests through one
    # worker, which the outage must not multiply.
    healthy = asyncio.run(flood())
    assert all(response.status_code == 200 for response, _ in healthy)
    slowest_healthy = max(elapsed for _, elapsed in healthy)

    proxy.cut("blackhole")
    answers = asyncio.run(flood())
    for response, _ in answers:
        assert_unavailable(response)
    slowest = max(elapsed for _, elapsed in answers)
    # Each request waits at most the pool timeout (which covers the connect it may make) beyond the
    # worker's own time for the flood, whatever the number of requests in flight: the bound does not grow
    # with the queue (waiting in turn behind the others' timeouts would take 200 / POOL_SIZE of them).
    assert slowest < POOL_TIMEOUT + slowest_healthy + 1.5, (slowest, slowest_healthy)
    print(
        f"\n200 concurrent requests, database unreachable: every 503 within {slowest:.3f}s "
        f"(up: every 200 within {slowest_healthy:.3f}s)"
    )
    proxy.restore()
    assert get_page(server, headers)[0].status_code == 200


@postgres_only
def test_a_request_waiting_for_a_pool_slot_gives_up_with_503(database, database_url, auth_headers):
    add_user(USER)
    settings = make_settings(database_url, db_pool_size=1, db_pool_timeout=1, retry_after_seconds=RETRY_AFTER)
    store = open_store(settings)
    app = create_app(settings, store=store)

    async def scenario() -> tuple[httpx.Response, float, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            # The only connection of the pool is busy for 2.5 s.
            busy = asyncio.create_task(store.fetch(Statement("SELECT pg_sleep(2.5)", ()), ()))
            await wait_until_async(
                lambda: running_statements(database_url, "pg_sleep(2.5)") == 1,
                "the pool's one connection busy",
            )
            started = time.monotonic()
            response = await client.get(f"/sessions/user/{USER}/sessions", headers=auth_headers(USER))
            waited = time.monotonic() - started
            await busy
            after = await client.get(f"/sessions/user/{USER}/sessions", headers=auth_headers(USER))
        await store.close()
        return response, waited, after

    response, waited, after = asyncio.run(scenario())
    assert_unavailable(response)
    assert 1 <= waited < 1 + 1.5
    assert after.status_code == 200


@sqlite_only
def test_sqlite_locked_past_busy_timeout_answers_503_then_recovers(fresh_database_url, auth_headers):
    settings = make_settings(fresh_database_url, db_busy_timeout_ms=200, retry_after_seconds=RETRY_AFTER)
    database = open_database(settings)
    migrate(database)
    with database.connection_context():
        add_user(USER)
    app = create_app(settings)
    from starlette.testclient import TestClient

    holder = sqlite3.connect(urlparse(fresh_database_url).path, isolation_level=None)
    with TestClient(app, raise_server_exceptions=False) as client:
        try:
            # An exclusive lock in WAL mode shuts readers out too, as a stuck maintenance job would.
            holder.execute("PRAGMA locking_mode=EXCLUSIVE")
            holder.execute("BEGIN EXCLUSIVE")
            started = time.monotonic()
            response = client.get(f"/sessions/user/{USER}/sessions", headers=auth_headers(USER))
            waited = time.monotonic() - started
        finally:
            holder.rollback()
            holder.close()
        assert_unavailable(response)
        assert waited < 3
        assert client.get(f"/sessions/user/{USER}/sessions", headers=auth_headers(USER)).status_code == 200
