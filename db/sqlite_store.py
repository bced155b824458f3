"""SQLite for the request path: reads on one connection used on the event loop itself, writes on
another, in a thread of their own.

Reads: chosen by measurement (see the README's performance section): the list's statements take tens of
microseconds on SQLite, less than a hop to a worker thread and back (aiosqlite's way) costs, and in WAL
mode a reader never waits for a writer. The one wait a reader can meet, a file locked exclusively (a
maintenance job), is bounded by busy_timeout, and answered 503.

Writes (revocations) can wait for the file's one write lock, up to busy_timeout, while another process
writes: that wait must not stop the event loop, so writes run one at a time on a single thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

from autional_sessions.db.errors import DatabaseUnavailable
from autional_sessions.db.statements import Statement

# What sqlite3 says when the file cannot serve us now, as opposed to a bug in a statement.
_UNAVAILABLE = ("database is locked", "unable to open database", "disk i/o error")


class SqliteStore:
    dialect = "sqlite"

    def __init__(self, path: str, *, busy_timeout_ms: int) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None
        self._write_conn: sqlite3.Connection | None = None
        self._writer: ThreadPoolExecutor | None = None

    def _open(self) -> sqlite3.Connection:
        # The migrations made the file and switched it to WAL, which is a property of the file; a
        # connection only needs its own busy timeout. check_same_thread=False: a test client may drive
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
        return conn

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    async def fetch(self, statement: Statement, params: tuple) -> list[tuple]:
        try:
            return self._connection().execute(statement.sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            raise _unavailable(exc) or exc from exc

    async def write(self, statement: Statement, params: tuple) -> list[tuple]:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self._write, statement, params)

    def _write(self, statement: Statement, params: tuple) -> list[tuple]:
        # On the writer thread: one statement, committed on its own (autocommit), its RETURNING rows.
        try:
            if self._write_conn is None:
                self._write_conn = self._open()
            return self._write_conn.execute(statement.sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            raise _unavailable(exc) or exc from exc

    def _close_writer(self) -> None:
        if self._write_conn is not None:
            self._write_conn.close()
            self._write_conn = None

    def snapshot(self) -> _ReadTransaction:
        return _ReadTransaction(self._connection())

    async def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await asyncio.get_running_loop().run_in_executor(writer, self._close_writer)
            writer.shutdown(wait=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _unavailable(exc: sqlite3.OperationalError) -> DatabaseUnavailable | None:
    """sqlite3's error for a file that cannot serve us now, as `DatabaseUnavailable` (a 503); None for
    any other error (a bug in a statement, a 500)."""
    message = str(exc).lower()
    if any(reason in message for reason in _UNAVAILABLE):
        return DatabaseUnavailable(f"sqlite: {message}")
    return None


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
