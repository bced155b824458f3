"""Opening the database named by `AUTIONAL_DATABASE_URL`, pooled, with bounded waits.

Both engines are pooled so that a request checks a connection out and back in the same way whatever
thread serves it: SQLite in WAL mode with a busy timeout (readers and one writer do not fail each other),
PostgreSQL with connect and statement timeouts so a sick database cannot hang a request.
"""

from __future__ import annotations

from urllib.parse import unquote, urlparse

import peewee
from playhouse.pool import MaxConnectionsExceeded, PooledPostgresqlDatabase, PooledSqliteDatabase

from autional_sessions.config import Settings
from db.models import database_proxy

try:
    import psycopg2
except ImportError:  # PostgreSQL support is optional at run time; SQLite needs nothing.
    psycopg2 = None


def open_database(settings: Settings) -> peewee.Database:
    """Build the pooled database for the configured URL and bind the models to it."""
    url = urlparse(settings.database_url)
    if url.scheme == "sqlite":
        database = _sqlite(url.path, settings)
    else:
        database = _postgresql(url, settings)
    database_proxy.initialize(database)
    return database


def _sqlite(raw_path: str, settings: Settings) -> peewee.Database:
    # sqlite:///relative.db -> "relative.db"; sqlite:////abs/path.db -> "/abs/path.db"
    path = unquote(raw_path[1:] if raw_path.startswith("/") else raw_path) or ":memory:"
    return PooledSqliteDatabase(
        path,
        max_connections=settings.db_pool_size,
        timeout=settings.db_pool_timeout,
        pragmas={
            "journal_mode": "wal",
            "busy_timeout": settings.db_busy_timeout_ms,
            "foreign_keys": 1,
            "synchronous": "normal",
        },
        check_same_thread=False,
    )


def _postgresql(url, settings: Settings) -> peewee.Database:
    if psycopg2 is None:
        raise RuntimeError("PostgreSQL needs psycopg2: pip install psycopg2-binary")
    return PooledPostgresqlDatabase(
        unquote(url.path.lstrip("/")),
        max_connections=settings.db_pool_size,
        timeout=settings.db_pool_timeout,
        # Recycle connections now and then so a load balancer or failover never keeps a stale one forever.
        stale_timeout=300,
        host=url.hostname or "127.0.0.1",
        port=url.port or 5432,
        user=unquote(url.username) if url.username else None,
        password=unquote(url.password) if url.password else None,
        connect_timeout=settings.db_connect_timeout,
        application_name=settings.service_name,
        options=f"-c statement_timeout={settings.db_statement_timeout_ms}",
        # Notice a peer that vanished without closing the socket (a dead host, a cut network).
        keepalives=1,
        keepalives_idle=10,
        keepalives_interval=3,
        keepalives_count=3,
    )


def is_unavailable(exc: BaseException) -> bool:
    """Whether an error means "the database cannot serve us right now" (503) rather than a bug (500)."""
    if isinstance(exc, MaxConnectionsExceeded):
        return True
    if not isinstance(exc, peewee.OperationalError | peewee.InterfaceError):
        return False
    if isinstance(database_proxy.obj, peewee.PostgresqlDatabase):
        # psycopg2 raises these for a refused or lost connection, an admin shutdown and a statement
        # timeout; schema and query bugs are ProgrammingError and friends, which stay 500.
        return True
    message = str(exc).lower()
    # SQLite: another writer held the lock past busy_timeout, or the file cannot be opened.
    return "database is locked" in message or "unable to open database" in message
