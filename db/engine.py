"""Opening the database named by `AUTIONAL_DATABASE_URL`, pooled, with bounded waits.

Both engines are pooled so that a request checks a connection out and back in the same way whatever
thread serves it: SQLite in WAL mode with a busy timeout (readers and one writer do not fail each other),
PostgreSQL with connect and statement timeouts, which the client keeps too (`db.pg_deadline`), so a sick
database cannot hang a request. Waiting for a pool slot is bounded by the pool timeout; what the
database cannot serve, `is_unavailable` tells apart for the app's 503.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import unquote, urlparse

import peewee
from playhouse.pool import (
    MaxConnectionsExceeded,
    PoolConnection,
    PooledDatabase,
    PooledPostgresqlDatabase,
    PooledSqliteDatabase,
)

from autional_sessions.config import Settings
from db.models import database_proxy

logger = logging.getLogger("autional_sessions.db")
T = TypeVar("T")

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
    return _SqlitePool(
        path,
        max_connections=settings.db_pool_size,
        timeout=settings.db_pool_timeout,
        # In this order: busy_timeout first, so that it (not sqlite3's default of 5 s) bounds the wait of
        # the journal_mode pragma, which needs a lock, on a locked file.
        pragmas={
            "busy_timeout": settings.db_busy_timeout_ms,
            "journal_mode": "wal",
            "foreign_keys": 1,
            "synchronous": "normal",
        },
        check_same_thread=False,
    )


def _postgresql(url, settings: Settings) -> peewee.Database:
    if psycopg2 is None:
        raise RuntimeError("PostgreSQL needs psycopg2: pip install psycopg2-binary")
    from db import pg_deadline

    pg_deadline.install()
    return _PostgresqlPool(
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
        # The same bounds, kept by the client even when the server cannot keep its own: a statement gets
        # a second more than the server's statement_timeout, so that the server's cancel comes first.
        connection_factory=functools.partial(
            pg_deadline.PatientConnection,
            connect_patience=settings.db_connect_timeout,
            statement_patience=(settings.db_statement_timeout_ms / 1000 + 1)
            if settings.db_statement_timeout_ms
            else None,
        ),
        application_name=settings.service_name,
        # 0, for maintenance commands only, means no timeout, to PostgreSQL as to the client deadline.
        options=f"-c statement_timeout={settings.db_statement_timeout_ms}",
        # Notice a peer that vanished without closing the socket (a dead host, a cut network) within
        # about the connect timeout, whether we wait for its answer (keepalives) or for it to take our
        # query (tcp_user_timeout, in milliseconds), rather than after the kernel's default of hours.
        keepalives=1,
        keepalives_idle=settings.db_connect_timeout,
        keepalives_interval=1,
        keepalives_count=3,
        tcp_user_timeout=settings.db_connect_timeout * 1000,
    )


class _UnblockingPool(PooledDatabase):
    """playhouse.pool's pool, changed so that one slow connect cannot stall every other request.

    peewee opens a new connection while holding both the database lock and the pool lock, so while one
    thread waits up to the connect timeout for an unreachable server, no other thread can check a
    connection out or even back in: N waiting requests take N connect timeouts. Here a slot is reserved
    under the pool lock and the connection opened outside it. The database lock only guards per-thread
    state (thread_safe=True keeps it in a threading.local), so it is dropped.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._lock = contextlib.nullcontext()
        self._opening = 0

    def _connect(self):
        with self._pool_lock:
            while self._connections:
                timestamp, _counter, conn = heapq.heappop(self._connections)
                if self._is_closed(conn):
                    continue
                if self._stale_timeout and self._is_stale(timestamp):
                    self._close_raw(conn)
                    continue
                self._in_use[self.conn_key(conn)] = PoolConnection(timestamp, conn, time.time())
                return conn
            if len(self._in_use) + self._opening >= self._max_connections:
                raise MaxConnectionsExceeded("Exceeded maximum connections.")
            self._opening += 1
        conn = None
        try:
            conn = super(PooledDatabase, self)._connect()
        finally:
            with self._pool_lock:
                self._opening -= 1
                if conn is None:
                    self._pool_available.notify()  # the reserved slot is free again
                else:
                    now = time.time()
                    self._in_use[self.conn_key(conn)] = PoolConnection(now, conn, now)
        return conn


class _SqlitePool(_UnblockingPool, PooledSqliteDatabase):
    def _set_pragmas(self, conn) -> None:
        # Switching a new file to WAL needs a lock for which SQLite does not always call its busy
        # handler: several processes opening a fresh file at once got "database is locked" at once.
        # Wait for it as busy_timeout would (the pragmas are idempotent).
        deadline = time.monotonic() + dict(self._pragmas)["busy_timeout"] / 1000
        while True:
            try:
                return super()._set_pragmas(conn)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(0.005)


class _PostgresqlPool(_UnblockingPool, PooledPostgresqlDatabase):
    def _is_closed(self, conn) -> bool:
        # peewee pings every pooled connection at check-out (a round trip per request). Only the local
        # state is looked at here; a connection the server dropped fails its first statement instead,
        # and `run_read` retries that once on a fresh connection.
        return (
            bool(conn.closed)
            or conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_UNKNOWN
        )


def run_read(work: Callable[[], T]) -> T:
    """Run read-only `work` on a pooled connection, and once more on a new one if the first was dead.

    When the server dropped pooled connections (a restart, a failover, a cut network), the first
    statement on one of them fails and the connection reports itself closed. Its idle siblings most
    likely share its fate, so they are closed too, and the work, which only reads and is therefore safe
    to repeat, runs once more on a fresh connection. A second failure is the database's answer, which
    the app's error handler turns into a 503.
    """
    database = database_proxy.obj
    with database.connection_context():
        conn = database.connection()
        try:
            return work()
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            # sqlite3 connections have no `closed`: a local file does not drop its connections.
            if not getattr(conn, "closed", 0):
                raise
            logger.info("pooled connection was dead (%s); retrying on a new one", exc.__class__.__name__)
    database.close_idle()
    with database.connection_context():
        return work()


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
