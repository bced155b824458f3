"""The models agree with the migrated schema, and SQLite is set up for concurrent readers and a writer."""

from __future__ import annotations

import peewee
import pytest

from autional_sessions.db.models import Session, User


@pytest.mark.parametrize("model", [User, Session])
def test_models_match_the_migrated_tables(database, model):
    with database.connection_context():
        columns = {c.name for c in database.get_columns(model._meta.table_name)}

    assert columns == {field.column_name for field in model._meta.sorted_fields}


def test_the_list_query_index_exists(database):
    with database.connection_context():
        indexes = {i.name: i.columns for i in database.get_indexes("sessions")}

    assert indexes["sessions_user_status_activity"] == ["user_id", "status", "last_active_at", "id"]


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(database, settings):
    if not isinstance(database, peewee.SqliteDatabase):
        pytest.skip("SQLite-only: journal mode and busy timeout are SQLite pragmas")
    with database.connection_context():
        assert database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert database.execute_sql("PRAGMA busy_timeout").fetchone()[0] == settings.db_busy_timeout_ms
