"""PostgreSQL for the request path: asyncpg and its pool, every wait bounded.

- Waiting for a pooled connection, including opening a new one, is bounded by the pool timeout.
- Opening a connection is bounded by the connect timeout.
- A statement is bounded by the server's statement_timeout, and by the client a second later, for a
  server too frozen to cancel it; a connection that timed out is closed, never reused.

asyncpg prepares each statement once per connection and caches it, so a request only binds values.
The URL is handed to asyncpg whole, so its libpq options (sslmode, sslrootcert, a Unix socket host,
application_name, ...) reach the connection. Nothing here changes the driver process-wide.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import asyncpg

from autional_sessions.db.errors import DatabaseUnavailable
from autional_sessions.db.statements import Statement
from autional_sessions.db.url import DatabaseUrl

logger = logging.getLogger("autional_sessions.db")

# The connection is gone or unusable, as opposed to a statement that is wrong (which stays a 500).
_CONNECTION_LOST = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    ConnectionError,
)
_UNAVAILABLE = (
    *_CONNECTION_LOST,
    asyncpg.exceptions.CannotConnectNowError,  # starting up, shutting down, in recovery
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, crash shutdown, query cancelled
    asyncpg.exceptions.InsufficientResourcesError,  # out of connections, disk or memory
    asyncpg.exceptions.TooManyConnectionsError,
    OSError,  # refused, unreachable, reset
    TimeoutError,
)


class PostgresStore:
    dialect = "postgresql"

    def __init__(
        self,
        url: DatabaseUrl,
        *,
        pool_size: int,
        pool_timeout: int,
        connect_timeout: int,
        statement_timeout_ms: int,
        application_name: str,
        on_pool_wait: Callable[[float], None],
    ) -> None:
        """`on_pool_wait` is told how long each statement waited for a connection (the metrics count it)."""
        self._url = url
        self._pool_size = pool_size
        self._pool_timeout = pool_timeout
        self._connect_timeout = connect_timeout
        self._statement_timeout_ms = statement_timeout_ms
        self._application_name = application_name
        self._on_pool_wait = on_pool_wait
        self._pool: asyncpg.Pool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _get_pool(self) -> asyncpg.Pool:
        loop = asyncio.get_running_loop()
        if self._pool is None or self._loop is not loop:
            # A pool belongs to the event loop that made it. A server has one loop per worker process;
            # a test client may start one per request, and gets a pool of its own each time.
            if self._pool is not None:
                # Its loop may be closed already (a test client's), and then its sockets with it.
                with contextlib.suppress(RuntimeError):
                    self._pool.terminate()
            settings = {"statement_timeout": str(self._statement_timeout_ms)}
            if "application_name" not in self._url.options:
                settings["application_name"] = self._application_name
            self._pool = asyncpg.create_pool(
                self._url.raw,
                min_size=0,  # connect on demand: the server starts while its database is down
                max_size=self._pool_size,
                timeout=self._connect_timeout,
                # Recycle connections now and then, so a load balancer or failover never keeps a stale one.
                max_inactive_connection_lifetime=300,
                server_settings=settings,
            )
            self._loop = loop
            await self._pool  # with min_size=0 this opens nothing
        return self._pool

    async def fetch(self, statement: Statement, params: tuple) -> list[tuple]:
        pool = await self._get_pool()
        try:
            try:
                return await self._fetch_once(pool, statement, params)
            except _CONNECTION_LOST as exc:
                # The server dropped pooled connections (a restart, a failover, a cut network); their
                # idle siblings most likely share the fate. The statement only reads, so it is safe to
                # run once more, on a new connection.
                logger.info("pooled connection was dead (%s); retrying on a new one", type(exc).__name__)
                await pool.expire_connections()
                return await self._fetch_once(pool, statement, params)
        except _UNAVAILABLE as exc:
            raise DatabaseUnavailable(f"postgresql: {type(exc).__name__}") from exc

    async def write(self, statement: Statement, params: tuple) -> list[tuple]:
        # Not retried: a write whose connection died may have committed, and its RETURNING rows are lost.
        pool = await self._get_pool()
        try:
            return await self._fetch_once(pool, statement, params)
        except _UNAVAILABLE as exc:
            raise DatabaseUnavailable(f"postgresql: {type(exc).__name__}") from exc

    async def _fetch_once(self, pool: asyncpg.Pool, statement: Statement, params: tuple) -> list[tuple]:
        # Bounds the wait for a slot and the connect that may follow it.
        started = time.monotonic()
        try:
            conn = await pool.acquire(timeout=self._pool_timeout)
        finally:
            self._on_pool_wait(time.monotonic() - started)
        try:
            rows = await conn.fetch(statement.sql, *params, timeout=self._client_deadline)
        except asyncpg.PostgresError:
            raise  # the server answered: the connection is in a known state, and goes back to the pool
        except BaseException:
            # Whatever state it is in (mid-statement, timed out, cancelled), it is not handed out again;
            # terminate() closes it without a round trip, so the release below cannot wait on it.
            conn.terminate()
            raise
        finally:
            await pool.release(conn)
        return [tuple(row) for row in rows]

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[None]:
        # Each list statement is one snapshot on its own here: the page carries its total (a window
        # count), and the count statement only runs for an empty page.
        yield

    @property
    def _client_deadline(self) -> float | None:
        # A second past the server's own timeout, so that the server's cancel, when it can, comes first.
        return self._statement_timeout_ms / 1000 + 1 if self._statement_timeout_ms else None

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            if self._loop is asyncio.get_running_loop():
                await pool.close()
            else:
                pool.terminate()
