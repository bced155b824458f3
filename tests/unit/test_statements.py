"""Statements compiled once from peewee queries: slots bound per request, constants kept, in order."""

from __future__ import annotations

import peewee
import pytest

from autional_sessions.db.models import Session
from autional_sessions.db.queries import list_statements
from autional_sessions.db.statements import Statement, compile_query, slot


def slots_of(statement: Statement) -> tuple[str, ...]:
    """The slot names of a statement, in the order its parameters are bound."""
    return tuple(value for is_slot, value in statement._params if is_slot)


def query() -> peewee.Query:
    return (
        Session.select(Session.id)
        .where((Session.user == slot("user_id")) & (Session.status == "active"))
        .where((Session.expires_at > slot("now")) & (Session.idle_expires_at > slot("now")))
        .limit(slot("limit"))
    )


def test_slots_are_bound_in_placeholder_order_and_constants_stay():
    statement = compile_query(query(), peewee.SqliteDatabase(None))

    assert slots_of(statement) == ("user_id", "now", "now", "limit")
    assert statement.bind({"user_id": "usr_a", "now": "2026-01-01 00:00:00", "limit": 5}) == (
        "usr_a",
        "active",
        "2026-01-01 00:00:00",
        "2026-01-01 00:00:00",
        5,
    )
    assert statement.sql.count("?") == 5


def test_postgresql_placeholders_are_numbered_for_asyncpg():
    statement = compile_query(query(), peewee.PostgresqlDatabase(None))

    assert "%s" not in statement.sql
    assert [f"${n}" in statement.sql for n in range(1, 6)] == [True] * 5
    assert "$6" not in statement.sql


def test_a_missing_value_is_an_error_not_a_silent_null():
    statement = compile_query(query(), peewee.SqliteDatabase(None))

    with pytest.raises(KeyError):
        statement.bind({"user_id": "usr_a", "now": "x"})


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_list_statements_bind_every_request_value(dialect):
    statements = list_statements(dialect)
    in_tenant = list_statements(dialect, in_tenant=True)

    assert set(slots_of(statements.page)) == {"user_id", "now", "limit", "offset"}
    assert set(slots_of(statements.count)) == {"user_id", "now"}
    assert set(slots_of(in_tenant.page)) == {"user_id", "now", "limit", "offset", "tenant"}
    assert set(slots_of(in_tenant.count)) == {"user_id", "now", "tenant"}


def test_sqlite_rows_become_the_api_s_items_field_by_field_with_rfc3339_timestamps():
    from autional_sessions.db.models import SESSION_FIELDS, SESSION_TIME_FIELDS
    from autional_sessions.db.queries import sqlite_items

    row = tuple(
        "2026-11-29 23:05:07.123456" if name in SESSION_TIME_FIELDS else f"value of {name}"
        for name in SESSION_FIELDS
    )

    (item,) = sqlite_items([row])

    assert list(item) == list(SESSION_FIELDS)
    for name in SESSION_FIELDS:
        expected = "2026-11-29T23:05:07Z" if name in SESSION_TIME_FIELDS else f"value of {name}"
        assert item[name] == expected, name
