"""The request path's access to the database: run a compiled statement, get its rows, never block
the event loop for long, and turn "the database cannot serve us" into `DatabaseUnavailable`.

`open_store` picks the engine's store from the URL. Both stores are built at start-up and open their
connections on first use, so the server starts (and can report itself not ready) while its database
is down, and serves as soon as it is back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Protocol

from autional_sessions.config import Settings
from autional_sessions.db.statements import Statement
from autional_sessions.db.url import DatabaseUrl


class Store(Protocol):
    dialect: str  # "sqlite" or "postgresql": which SQL the statements must be compiled for

    async def fetch(self, statement: Statement, params: tuple) -> list[tuple]:
        """The rows of a read-only statement; retried once on a new connection if the first was dead."""
        ...

    async def write(self, statement: Statement, params: tuple) -> list[tuple]:
        """Run one writing statement, committed on its own, and return its RETURNING rows. Never
        retried, and never blocks the event loop while it waits for a lock."""
        ...

    def snapshot(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Statements fetched inside see one snapshot of the data (where the engine needs telling)."""
        ...

    async def close(self) -> None:
        """Close every connection; the store opens new ones if used again."""
        ...


def open_store(settings: Settings, *, on_pool_wait: Callable[[float], None] = lambda _seconds: None) -> Store:
    """The store of `settings.database_url`, with the settings' pool and timeouts. `on_pool_wait` (seconds a
    statement waited for a pooled connection) is called on PostgreSQL only: SQLite has no pool."""
    url = DatabaseUrl.parse(settings.database_url)
    if url.engine == "sqlite":
        from autional_sessions.db.sqlite_store import SqliteStore

        return SqliteStore(url.sqlite_path, busy_timeout_ms=settings.db_busy_timeout_ms)
    from autional_sessions.db.postgres_store import PostgresStore

    return PostgresStore(
        url,
        pool_size=settings.db_pool_size,
        pool_timeout=settings.db_pool_timeout,
        connect_timeout=settings.db_connect_timeout,
        statement_timeout_ms=settings.db_statement_timeout_ms,
        application_name=settings.service_name,
        on_pool_wait=on_pool_wait,
    )
