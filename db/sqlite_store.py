"""SQLite for the request path: one connection, used on the event loop itself.

Chosen by measurement (see the README's performance section): the list's statements take tens of
microseconds on SQLite, less than a hop to a worker thread and back (aiosqlite's way) costs, and in WAL
mode a reader never waits for a writer. The one wait a reader can meet, a file locked exclusively (a
maintenance job), is bounded by busy_timeout, and answered 503.
"""

from __future__ import annotations

import sqlite3
from urllib.parse import quote

from db.errors import DatabaseUnavailable
from db.statements import Statement

# What sqlite3 says when the file cannot serve us now, as opposed to a bug in a statement.
_UNAVAILABLE = ("database is locked", "unable to open database", "disk i/o error")


class SqliteStore:
    dialect = "sqlite"

    def __init__(self, path: str, *, busy_timeout_ms: int) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            # The migrations made the file and switched it to WAL, which is a property of the file; a
            # reader only needs its own busy timeout. check_same_thread=False: a test client may drive
            # the app from a different thread than the one that first used it.
            # mode=rw: a missing file is an outage to report, not an empty database to create.
            conn = sqlite3.connect(
                f"file:{quote(self._path)}?mode=rw",
                uri=True,
                timeout=self._busy_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            self._conn = conn
        return self._conn

    async def fetch(self, statement: Statement, params: tuple) -> list[tuple]:
        try:
            return self._connection().execute(statement.sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            message = str(exc).lower()
            if any(reason in message for reason in _UNAVAILABLE):
                raise DatabaseUnavailable(f"sqlite: {message}") from exc
            raise

    def snapshot(self) -> _ReadTransaction:
        return _ReadTransaction(self._connection())

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _ReadTransaction:
    """One read transaction for several statements (a plain class: a generator-based context manager
    cost a few per cent of a request). The connection is shared by every request of this loop, which is
    safe because fetch never suspends: no other request runs in between."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def __aenter__(self) -> None:
        if self._conn.in_transaction:
            raise RuntimeError("a snapshot is already open on this connection")
        try:
            self._conn.execute("BEGIN")
        except sqlite3.OperationalError as exc:
            raise DatabaseUnavailable(f"sqlite: {exc}") from exc

    async def __aexit__(self, *exc_info: object) -> None:
        self._conn.execute("COMMIT")
