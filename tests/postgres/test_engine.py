"""The request path's store: a pool of a fixed size that gives every connection back, bounded waits for
a slot and for a statement, and many concurrent requests on one event loop each served their own rows."""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import peewee
import pytest

from autional_sessions.cli import main
from autional_sessions.config import Settings
from autional_sessions.db.errors import DatabaseUnavailable
from autional_sessions.db.maintenance import open_database
from autional_sessions.db.statements import Statement
from autional_sessions.db.store import open_store
from autional_sessions.testing import make_settings, postgres_admin_connection
from tests.factories import add_session, add_user
from tests.postgres.support import postgres_only, running_server, running_statements, wait_until_async

USER = "usr_engine01"
POOL_SIZE = 3


def server_connections(application_name: str) -> int:
    conn = postgres_admin_connection()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (application_name,)
            )
            return cur.fetchone()[0]
    finally:
        conn.close()


def sql(text: str) -> Statement:
    return Statement(text, ())


@pytest.mark.slow
def test_many_concurrent_requests_share_a_small_pool_and_return_every_connection(
    database, database_url, tmp_path, auth_headers
):
    add_user(USER)
    add_session("sess_engine_1", USER)
    name = f"autional-test-{uuid.uuid4().hex[:8]}"  # PostgreSQL's application_name of this server
    env = {
        "AUTIONAL_DB_POOL_SIZE": str(POOL_SIZE),
        "AUTIONAL_DB_POOL_TIMEOUT": "10",
        "AUTIONAL_SERVICE_NAME": name,
    }
    headers = auth_headers(USER)

    with running_server(database_url, tmp_path / "server.log", env=env) as server:

        def get(_: int) -> int:
            url = f"{server.url}/sessions/user/{USER}/sessions"
            return httpx.get(url, headers=headers, timeout=30).status_code

        # Four times as many requests in flight as connections, many rounds of them: a connection that
        # was not given back would soon leave requests waiting for a slot, and answered 503.
        with ThreadPoolExecutor(POOL_SIZE * 4) as pool:
            statuses = list(pool.map(get, range(POOL_SIZE * 40)))
        assert statuses == [200] * len(statuses)
        if isinstance(database, peewee.PostgresqlDatabase):
            assert 1 <= server_connections(name) <= POOL_SIZE


@postgres_only
def test_a_statement_past_the_statement_timeout_is_cancelled_and_means_unavailable(database_url):
    store = open_store(make_settings(database_url, db_statement_timeout_ms=300))

    async def scenario() -> float:
        try:
            assert await store.fetch(sql("SHOW statement_timeout"), ()) == [("300ms",)]
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable):
                await store.fetch(sql("SELECT pg_sleep(10)"), ())
            elapsed = time.monotonic() - started
            # The connection that was cancelled serves the next statement.
            assert await store.fetch(sql("SELECT 1"), ()) == [(1,)]
            return elapsed
        finally:
            await store.close()

    assert asyncio.run(scenario()) < 2


@postgres_only
def test_waiting_for_a_pool_slot_is_bounded_by_the_pool_timeout(database_url):
    store = open_store(make_settings(database_url, db_pool_size=2, db_pool_timeout=1))

    async def scenario() -> float:
        try:
            # Both connections busy for 3 s; a third statement waits for a slot, and gives up after 1 s.
            busy = [asyncio.create_task(store.fetch(sql("SELECT pg_sleep(3)"), ())) for _ in range(2)]
            await wait_until_async(
                lambda: running_statements(database_url, "pg_sleep(3)") == 2, "both connections busy"
            )
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable):
                await store.fetch(sql("SELECT 1"), ())
            waited = time.monotonic() - started
            await asyncio.gather(*busy)
            # Both came back: the pool serves again.
            assert await store.fetch(sql("SELECT 1"), ()) == [(1,)]
            return waited
        finally:
            await store.close()

    waited = asyncio.run(scenario())
    assert 1 <= waited < 1.5


@postgres_only
def test_closing_the_store_closes_its_connections(database_url):
    name = f"autional-test-{uuid.uuid4().hex[:8]}"
    store = open_store(make_settings(database_url, service_name=name))

    async def scenario() -> tuple[int, int]:
        await asyncio.gather(*(store.fetch(sql("SELECT pg_sleep(0.2)"), ()) for _ in range(3)))
        opened = server_connections(name)
        await store.close()
        return opened, server_connections(name)

    opened, after_close = asyncio.run(scenario())
    assert opened == 3
    assert after_close == 0


@postgres_only
def test_migrate_and_seed_are_not_bound_by_the_statement_timeout_of_requests(fresh_database_url, monkeypatch):
    monkeypatch.setenv("AUTIONAL_DATABASE_URL", fresh_database_url)
    # Far below what a 2,000-row insert takes: only a command without the request timeout gets through.
    monkeypatch.setenv("AUTIONAL_DB_STATEMENT_TIMEOUT_MS", "1")

    assert main(["migrate"]) == 0
    assert main(["seed", "--users", "200", "--sessions-per-user", "20"]) == 0

    store = open_store(Settings.from_env())

    async def serving() -> None:
        try:
            with pytest.raises(DatabaseUnavailable):
                await store.fetch(sql("SELECT pg_sleep(0.5)"), ())
        finally:
            await store.close()

    asyncio.run(serving())


@postgres_only
def test_a_url_asking_for_tls_is_refused_by_a_server_without_it(database_url):
    # This machine's server has ssl=off: a URL that requires TLS must fail to connect, not fall back to
    # plain text; the same URL without the requirement connects.
    conn = postgres_admin_connection()
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW ssl")
            if cur.fetchone()[0] == "on":
                pytest.skip("this PostgreSQL server offers TLS; the refusal needs one that does not")
    finally:
        conn.close()

    async def fetch_one(url: str) -> list[tuple]:
        store = open_store(make_settings(url))
        try:
            return await store.fetch(sql("SELECT 1"), ())
        finally:
            await store.close()

    with pytest.raises(DatabaseUnavailable):
        asyncio.run(fetch_one(f"{database_url}?sslmode=require"))
    assert asyncio.run(fetch_one(f"{database_url}?sslmode=disable")) == [(1,)]
    with pytest.raises(peewee.OperationalError):
        maintenance = open_database(make_settings(f"{database_url}?sslmode=require"))
        maintenance.connect()


@postgres_only
def test_libpq_options_of_the_url_reach_the_connection(database_url):
    name = f"from-url-{uuid.uuid4().hex[:8]}"

    async def scenario() -> list[tuple]:
        store = open_store(make_settings(f"{database_url}?application_name={name}"))
        try:
            return await store.fetch(sql("SELECT current_setting('application_name')"), ())
        finally:
            await store.close()

    assert asyncio.run(scenario()) == [(name,)]
