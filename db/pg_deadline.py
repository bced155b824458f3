"""Client-side deadlines for psycopg2, so that a frozen PostgreSQL cannot hold a request forever.

The server's statement_timeout cancels a slow statement only while the server works; libpq's
connect_timeout and TCP keepalives notice a server that is gone. Neither notices a server that is frozen
(a stopped process, a stuck disk, a proxy that stopped passing bytes): its host still acknowledges
every packet, and a blocking read waits forever. With a wait callback installed, psycopg2 runs every
connect and statement through it, and this one gives up after the connection's patience. psycopg2 then
closes the connection, so the pool never hands it out again.
"""

from __future__ import annotations

import select
import time

import psycopg2
import psycopg2.extensions as pg


class PatientConnection(pg.connection):
    """A psycopg2 connection that carries how long `wait_with_deadline` waits for its server."""

    def __init__(
        self, dsn: str, *, connect_patience: float, statement_patience: float | None, **kwargs
    ) -> None:
        # Set before the base class's __init__, which connects, through the wait callback.
        self.connect_patience = connect_patience
        self.statement_patience = statement_patience
        super().__init__(dsn, **kwargs)


def wait_with_deadline(conn: pg.connection) -> None:
    """psycopg2's wait callback: psycopg2.extras.wait_select with a deadline, for PatientConnections.

    Other connections (tools, tests), and statements whose patience is None (maintenance commands), wait
    as long as it takes, as without a callback.
    """
    patience: float | None = None
    if isinstance(conn, PatientConnection):
        patience = conn.connect_patience if conn.status == pg.STATUS_SETUP else conn.statement_patience
    deadline = None if patience is None else time.monotonic() + patience
    poller = select.poll()  # not select.select: it cannot watch descriptors above 1023
    while True:
        state = conn.poll()
        if state == pg.POLL_OK:
            return
        if state not in (pg.POLL_READ, pg.POLL_WRITE):
            raise psycopg2.OperationalError(f"bad state from poll: {state}")
        poller.register(conn.fileno(), select.POLLIN if state == pg.POLL_READ else select.POLLOUT)
        timeout_ms = None if deadline is None else max(0.0, deadline - time.monotonic()) * 1000
        if not poller.poll(timeout_ms):
            raise psycopg2.OperationalError(f"no answer from the database server within {patience:g}s")


def install() -> None:
    """Route every psycopg2 wait in this process through `wait_with_deadline` (a process-wide setting)."""
    pg.set_wait_callback(wait_with_deadline)
