"""Versioned, forward-only migrations: from nothing, from the previous version with data, and again."""

from __future__ import annotations

import datetime as dt
import threading

import peewee

from autional_sessions.db.maintenance import open_database
from autional_sessions.db.migrations import LATEST_VERSION, MIGRATIONS, applied_versions, migrate
from autional_sessions.db.models import SESSION_FIELDS
from autional_sessions.db.seed import session_rows, user_id
from autional_sessions.testing import make_settings

LIST_INDEX = "sessions_user_status_activity"


def seed_columns_of_version_1(database: peewee.Database, users: int, sessions: int) -> None:
    """Demo rows written with only the columns migration 1 made (today's seed writes later ones too)."""
    now = dt.datetime(2026, 11, 1, 12, 0, 0)
    marks = ", ".join([database.param] * len(SESSION_FIELDS))
    with database.connection_context(), database.atomic():
        for n in range(users):
            database.execute_sql(
                f"INSERT INTO users (id, tenant_id, created_at) VALUES ({database.param}, {database.param}, "
                f"{database.param})",
                (user_id(n), "tnt_demo", now),
            )
            for row in session_rows(n, sessions, now):
                database.execute_sql(
                    f"INSERT INTO sessions ({', '.join(SESSION_FIELDS)}) VALUES ({marks})", row
                )


def fresh(url: str) -> peewee.Database:
    return open_database(make_settings(url))


def indexes(database: peewee.Database) -> set[str]:
    with database.connection_context():
        return {index.name for index in database.get_indexes("sessions")}


def snapshot(database: peewee.Database) -> dict[str, list[tuple]]:
    """Every row of the data tables, in a stable order."""
    with database.connection_context():
        return {
            table: database.execute_sql(f"SELECT * FROM {table} ORDER BY id").fetchall()
            for table in ("users", "sessions")
        }


def test_migrate_builds_the_latest_schema_on_an_empty_database(fresh_database_url):
    database = fresh(fresh_database_url)

    applied = migrate(database)

    assert [m.version for m in applied] == [m.version for m in MIGRATIONS]
    with database.connection_context():
        assert applied_versions(database) == set(range(1, LATEST_VERSION + 1))
        assert {"users", "sessions", "schema_migrations"} <= set(database.get_tables())
    assert LIST_INDEX in indexes(database)
    database.close()


def test_upgrade_to_the_list_index_keeps_every_row_and_adds_the_index(fresh_database_url):
    database = fresh(fresh_database_url)
    migrate(database, target=1)
    seed_columns_of_version_1(database, 40, 15)
    before = snapshot(database)
    assert LIST_INDEX not in indexes(database)

    applied = migrate(database, target=2)

    assert [m.version for m in applied] == [2]
    after = snapshot(database)
    assert (len(after["users"]), len(after["sessions"])) == (40, 600)
    assert after == before
    assert LIST_INDEX in indexes(database)
    database.close()


def test_upgrade_to_the_revocation_time_keeps_every_row_and_adds_an_empty_column(fresh_database_url):
    database = fresh(fresh_database_url)
    migrate(database, target=2)
    seed_columns_of_version_1(database, 40, 15)
    before = snapshot(database)

    applied = migrate(database, target=3)

    assert [m.version for m in applied] == [3]
    after = snapshot(database)
    assert after["users"] == before["users"]
    assert [row[:-1] for row in after["sessions"]] == before["sessions"]
    assert {row[-1] for row in after["sessions"]} == {None}
    with database.connection_context():
        columns = [c.name for c in database.get_columns("sessions")]
    assert columns[-1] == "revoked_at"
    database.close()


def test_migrate_on_an_up_to_date_database_does_nothing(fresh_database_url):
    database = fresh(fresh_database_url)
    migrate(database)
    with database.connection_context():
        recorded = database.execute_sql("SELECT * FROM schema_migrations ORDER BY version").fetchall()

    assert migrate(database) == []

    with database.connection_context():
        assert database.execute_sql("SELECT * FROM schema_migrations ORDER BY version").fetchall() == recorded
    database.close()


def test_instances_migrating_at_once_apply_each_version_once(fresh_database_url):
    # Each instance has its own pool, as separate processes would.
    databases = [fresh(fresh_database_url) for _ in range(3)]
    applied: list[list[int]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(databases))

    def run(database: peewee.Database) -> None:
        start.wait(timeout=10)
        try:
            applied.append([m.version for m in migrate(database)])
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(d,)) for d in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sorted(v for versions in applied for v in versions) == [m.version for m in MIGRATIONS]
    with databases[0].connection_context():
        rows = databases[0].execute_sql("SELECT version FROM schema_migrations").fetchall()
    assert sorted(r[0] for r in rows) == [m.version for m in MIGRATIONS]
    for database in databases:
        database.close()
