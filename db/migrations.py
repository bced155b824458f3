"""Versioned, forward-only schema migrations, each applied once and recorded in `schema_migrations`.

Each migration is plain DDL written for the day it was made, not derived from today's models, so that
upgrading an old database always runs the same statements. Several instances may start at once: on
PostgreSQL an advisory lock, on SQLite an immediate transaction, lets one of them migrate while the
others wait and then find nothing left to do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import peewee

from autional_sessions.db.clock import utc_now

# Any fixed number: the key of the PostgreSQL advisory lock that serialises concurrent migrators.
_PG_MIGRATION_LOCK = 7_301_460_551


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: Callable[[peewee.Database], list[str]]


def _0001_users_and_sessions(database: peewee.Database) -> list[str]:
    return [
        """CREATE TABLE users (
            id VARCHAR(64) NOT NULL PRIMARY KEY,
            tenant_id VARCHAR(64) NOT NULL,
            created_at TIMESTAMP NOT NULL
        )""",
        """CREATE TABLE sessions (
            id VARCHAR(64) NOT NULL PRIMARY KEY,
            user_id VARCHAR(64) NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            tenant_id VARCHAR(64) NOT NULL,
            status VARCHAR(16) NOT NULL,
            amr VARCHAR(255) NOT NULL,
            authenticated_at TIMESTAMP NOT NULL,
            created_at TIMESTAMP NOT NULL,
            expires_at TIMESTAMP NOT NULL,
            idle_expires_at TIMESTAMP NOT NULL,
            last_active_at TIMESTAMP NOT NULL,
            ip VARCHAR(45) NOT NULL,
            geoip VARCHAR(255) NOT NULL,
            device_id VARCHAR(128) NOT NULL,
            device_type VARCHAR(32) NOT NULL,
            user_agent VARCHAR(512) NOT NULL
        )""",
        "CREATE INDEX sessions_user_id ON sessions (user_id)",
    ]


def _0002_active_session_list_index(database: peewee.Database) -> list[str]:
    # The list query filters on (user_id, status) and orders by (last_active_at, id) descending: with
    # this index both the page and its count read only the user's own active rows, in order.
    return [
        "DROP INDEX sessions_user_id",
        "CREATE INDEX sessions_user_status_activity ON sessions (user_id, status, last_active_at, id)",
    ]


def _0003_session_revocation_time(database: peewee.Database) -> list[str]:
    # Revoking a session marks it (status 'revoked') and says when; nothing is deleted, so the audit
    # trail stays. Existing rows keep every value, with no revocation time.
    return ["ALTER TABLE sessions ADD COLUMN revoked_at TIMESTAMP NULL"]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "users and sessions", _0001_users_and_sessions),
    Migration(2, "index for the active-session list", _0002_active_session_list_index),
    Migration(3, "session revocation time", _0003_session_revocation_time),
)
LATEST_VERSION = MIGRATIONS[-1].version


def applied_versions(database: peewee.Database) -> set[int]:
    if not database.table_exists("schema_migrations"):
        return set()
    return {row[0] for row in database.execute_sql("SELECT version FROM schema_migrations").fetchall()}


def migrate(database: peewee.Database, target: int | None = None) -> list[Migration]:
    """Apply every migration not yet applied, up to `target` (default: all). Returns what it applied."""
    target = LATEST_VERSION if target is None else target
    with database.connection_context():
        # Under the lock too: PostgreSQL's IF NOT EXISTS does not stop two sessions racing to create it.
        with _migration_transaction(database):
            database.execute_sql(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER NOT NULL PRIMARY KEY, name VARCHAR(200) NOT NULL, applied_at TIMESTAMP NOT NULL)"
            )
        applied: list[Migration] = []
        for migration in MIGRATIONS:
            if migration.version > target:
                break
            with _migration_transaction(database):
                # Checked again under the lock: another instance may have just applied it.
                if migration.version in applied_versions(database):
                    continue
                for statement in migration.statements(database):
                    database.execute_sql(statement)
                database.execute_sql(
                    f"INSERT INTO schema_migrations (version, name, applied_at) VALUES "
                    f"({database.param}, {database.param}, {database.param})",
                    (migration.version, migration.name, utc_now()),
                )
                applied.append(migration)
        return applied


def _migration_transaction(database: peewee.Database):
    if isinstance(database, peewee.PostgresqlDatabase):
        return _PgLockedTransaction(database)
    return database.atomic(lock_type="IMMEDIATE")


class _PgLockedTransaction:
    def __init__(self, database: peewee.Database) -> None:
        self._atomic = database.atomic()
        self._database = database

    def __enter__(self) -> None:
        self._atomic.__enter__()
        self._database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_PG_MIGRATION_LOCK,))

    def __exit__(self, *exc_info) -> bool | None:
        return self._atomic.__exit__(*exc_info)
