"""Test support shipped with the package, as a pytest plugin: a throw-away database on either engine,
settings for it, the app and its client, and a token signer.

The project's own tests load it from the repository's conftest.py; `autional-sessions contract-test`
loads it (`-p autional_sessions.testing`) when it runs the contract suite in process, from an install
that has no conftest.py of the repository. It needs the `server` extra.

The database under test is a temporary SQLite file, or, with AUTIONAL_TEST_DATABASE=postgresql, a
throw-away PostgreSQL database made for this run and dropped after it. Where no PostgreSQL answers, the
PostgreSQL run skips with the reason; under CI=true that is a failure instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import jwt
import peewee
import pytest

from autional_sessions.config import Settings
from autional_sessions.db.maintenance import open_database
from autional_sessions.db.migrations import migrate
from autional_sessions.db.models import database_proxy
from autional_sessions.db.queries import SessionQueries
from autional_sessions.db.statements import Statement
from autional_sessions.db.store import Store, open_store

TEST_SECRET = "test-secret-" + "0123456789abcdef" * 4  # long enough for HS512 (RFC 7518 §3.2)
TEST_ISSUER = "https://auth.autional.test"
TEST_AUDIENCE = "autional-sessions"
ADMIN_URL = os.environ.get("AUTIONAL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def test_engine() -> str:
    return os.environ.get("AUTIONAL_TEST_DATABASE", "sqlite")


def free_port() -> int:
    """A TCP port of 127.0.0.1 free now, for a server a test or the benchmark starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_missing(service: str, message: str) -> NoReturn:
    """Skip a test whose service (a database, Redis, a browser) is missing, saying why; under CI=true,
    where every service must be there, fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} -- CI=true requires {service}", pytrace=False)
    pytest.skip(message)


def _postgres_unreachable(reason: str) -> NoReturn:
    service_missing(
        "PostgreSQL", f"PostgreSQL is not reachable at {ADMIN_URL} ({reason}); set AUTIONAL_TEST_POSTGRES_URL"
    )


def postgres_admin_connection():
    """An autocommit psycopg connection to the server's maintenance database, or a skip/fail."""
    try:
        import psycopg

        from autional_sessions.db.scratch_databases import admin_connection
    except ImportError:
        _postgres_unreachable("psycopg is not installed")
    try:
        return admin_connection(ADMIN_URL)
    except psycopg.OperationalError as exc:
        _postgres_unreachable(str(exc).strip().splitlines()[0])


def create_postgres_database() -> str:
    from autional_sessions.db.scratch_databases import create_database

    postgres_admin_connection().close()  # a skip or a failure, with the reason, where there is no server
    return create_database(ADMIN_URL, f"autional_test_{uuid.uuid4().hex[:12]}")


def drop_postgres_database(url: str) -> None:
    from autional_sessions.db.scratch_databases import drop_databases

    drop_databases(ADMIN_URL, [url.rsplit("/", 1)[1]])


@contextlib.contextmanager
def throwaway_database(directory: Path) -> Iterator[str]:
    """An empty database on the engine of this run: a new PostgreSQL database, dropped after use, or a
    SQLite file in `directory`."""
    if test_engine() == "postgresql":
        url = create_postgres_database()
        try:
            yield url
        finally:
            drop_postgres_database(url)
    else:
        yield f"sqlite:///{directory / 'sessions.db'}"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with throwaway_database(tmp_path_factory.mktemp("db")) as url:
        yield url


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "jwt_secret": TEST_SECRET,
        "jwt_issuer": TEST_ISSUER,
        "jwt_audience": TEST_AUDIENCE,
        "validate_responses": True,
        "db_pool_size": 5,
        "db_pool_timeout": 2,
        "retry_after_seconds": 3,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture(scope="session")
def migrated_database(settings: Settings) -> peewee.Database:
    database = open_database(settings)
    migrate(database)
    return database


@pytest.fixture
def database(migrated_database: peewee.Database) -> peewee.Database:
    """The migrated test database, empty at the start of each test."""
    database = migrated_database
    database_proxy.initialize(database)  # rebinds the models, in case a test bound them elsewhere
    with database.connection_context():
        database.execute_sql("DELETE FROM sessions")
        database.execute_sql("DELETE FROM users")
    return database


@pytest.fixture
def find_active_sessions(settings: Settings) -> Callable[..., Any]:
    """The list query of the request path, run to completion from synchronous test code."""

    def find(user_id: str, now: Any, page: int, page_size: int) -> Any:
        async def run() -> Any:
            store = open_store(settings)
            try:
                return await SessionQueries(store).find_active_sessions(user_id, now, page, page_size)
            finally:
                await store.close()

        return asyncio.run(run())

    return find


@pytest.fixture
def store(settings: Settings) -> Store:
    """The request path's store of the app under test, for a test to reach under the app."""
    return open_store(settings)


@pytest.fixture
def break_database(monkeypatch: pytest.MonkeyPatch, store: Store) -> Callable[[], None]:
    """Make every statement fail as a bug would: the driver's own error for a table that does not exist."""

    def install() -> None:
        real_fetch = store.fetch
        broken = Statement("SELECT * FROM sessions_secret_internal", ())

        async def fetch(statement: Statement, params: tuple) -> list[tuple]:
            return await real_fetch(broken, ())

        monkeypatch.setattr(store, "fetch", fetch)

    return install


@pytest.fixture
def app(database: peewee.Database, settings: Settings, store: Store):
    from autional_sessions.http.app import create_app

    return create_app(settings, store=store)


@pytest.fixture
def client(app):
    from starlette.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def make_token() -> Callable[..., str]:
    """Sign a token like the identity provider would; keyword arguments override or drop (None) claims."""

    def make(
        subject: str,
        /,
        *,
        key: Any = TEST_SECRET,
        algorithm: str = "HS256",
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "sub": subject,
            "iat": now,
            "exp": now + 300,
            "iss": TEST_ISSUER,
            "aud": TEST_AUDIENCE,
        }
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, key, algorithm=algorithm, headers=headers)

    return make


@pytest.fixture
def auth_headers(make_token: Callable[..., str]) -> Callable[..., dict[str, str]]:
    def headers(subject: str, /, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {make_token(subject, **claims)}"}

    return headers
