"""The engine's bounds: a pool of a fixed size whose connections come back whatever thread used them,
and a statement timeout that turns a runaway statement into "unavailable"."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import peewee
import pytest

from autional_sessions.cli import main
from autional_sessions.config import Settings
from conftest import make_settings, postgres_admin_connection
from db.engine import is_unavailable, open_database
from tests.factories import add_session, add_user
from tests.postgres.support import postgres_only, running_server

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


@pytest.mark.slow
def test_many_requests_on_many_threads_share_a_small_pool_and_return_every_connection(
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
    database = open_database(make_settings(database_url, db_statement_timeout_ms=300))
    try:
        with database.connection_context():
            assert database.execute_sql("SHOW statement_timeout").fetchone()[0] == "300ms"
            started = time.monotonic()
            with pytest.raises(peewee.OperationalError) as raised:
                database.execute_sql("SELECT pg_sleep(10)")
            assert time.monotonic() - started < 2
        assert is_unavailable(raised.value)
    finally:
        database.close_all()


@postgres_only
def test_migrate_and_seed_are_not_bound_by_the_statement_timeout_of_requests(fresh_database_url, monkeypatch):
    monkeypatch.setenv("AUTIONAL_DATABASE_URL", fresh_database_url)
    # Far below what a 2,000-row insert takes: only a command without the request timeout gets through.
    monkeypatch.setenv("AUTIONAL_DB_STATEMENT_TIMEOUT_MS", "1")

    assert main(["migrate"]) == 0
    assert main(["seed", "--users", "200", "--sessions-per-user", "20"]) == 0

    serving = open_database(Settings.from_env())
    try:
        with serving.connection_context(), pytest.raises(peewee.OperationalError) as raised:
            serving.execute_sql("SELECT pg_sleep(0.5)")
        assert is_unavailable(raised.value)
    finally:
        serving.close_all()
