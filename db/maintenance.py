"""The database for maintenance work (migrate, seed, tests' fixtures): synchronous peewee, no pool.

The request path does not use this (see `db.store`); these commands run once, from one thread, and
may rightly take longer than any request should, so they are bound by no statement timeout unless
configured.
"""

from __future__ import annotations

import sqlite3
import time

import peewee

from autional_sessions.config import Settings
from autional_sessions.db.models import database_proxy
from autional_sessions.db.url import DatabaseUrl


def open_database(settings: Settings) -> peewee.Database:
    """A peewee database for the configured URL, with the models bound to it."""
    url = DatabaseUrl.parse(settings.database_url)
    if url.engine == "sqlite":
        database: peewee.Database = _PatientSqliteDatabase(
            url.sqlite_path,
            # busy_timeout first, so that it (not sqlite3's default of 5 s) bounds the wait of the
            # journal_mode pragma, which needs a lock, on a locked file.
            pragmas={
                "busy_timeout": settings.db_busy_timeout_ms,
                "journal_mode": "wal",
                "foreign_keys": 1,
                "synchronous": "normal",
            },
            check_same_thread=False,
        )
    else:
        params = url.libpq_parameters()
        name = params.pop("dbname")
        params.setdefault("application_name", settings.service_name)
        params.setdefault("connect_timeout", settings.db_connect_timeout)
        if settings.db_statement_timeout_ms:
            params["options"] = f"-c statement_timeout={settings.db_statement_timeout_ms}"
        database = peewee.PostgresqlDatabase(name, **params)
    database_proxy.initialize(database)
    return database


class _PatientSqliteDatabase(peewee.SqliteDatabase):
    def _set_pragmas(self, conn: sqlite3.Connection) -> None:
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
