"""The one place the service talks to the database: the queries behind the handlers."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

import peewee

from db.engine import run_read
from db.models import SESSION_FIELDS, SESSION_TIME_FIELDS, Session, User, database_proxy


@functools.cache
def _session_columns(postgresql: bool) -> tuple[peewee.Node, ...]:
    """The columns of a `dto.SessionResponse`, timestamps already written as the API writes them.

    The database formats them (RFC 3339, UTC, to the second): parsing each one into a datetime and
    formatting it again in Python cost about a quarter of a request's time on SQLite.
    """

    def column(name: str) -> peewee.Node:
        field = getattr(Session, name)
        if name not in SESSION_TIME_FIELDS:
            return field
        if postgresql:
            formatted = peewee.fn.to_char(field, 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
        else:
            formatted = peewee.fn.strftime("%Y-%m-%dT%H:%M:%SZ", field)
        # coerce(False): peewee would otherwise parse the text back with the field's converter.
        return formatted.coerce(False).alias(name)

    return tuple(column(name) for name in SESSION_FIELDS)


@dataclass(frozen=True)
class SessionPage:
    total: int
    rows: list[tuple]  # in SESSION_FIELDS order, timestamps as RFC 3339 strings


def _active(user_id: str, now: dt.datetime) -> peewee.Expression:
    """NIST SP 800-63B: a session lives until its absolute timeout and its inactivity timeout."""
    return (
        (Session.user == user_id)
        & (Session.status == "active")
        & (Session.expires_at > now)
        & (Session.idle_expires_at > now)
    )


def page_query(user_id: str, now: dt.datetime, page: int, page_size: int) -> peewee.Query:
    """One page of the user's active sessions, newest activity first, each row with the total count."""
    return (
        Session.select(
            *_session_columns(isinstance(database_proxy.obj, peewee.PostgresqlDatabase)),
            peewee.fn.COUNT(peewee.SQL("*")).over().alias("total"),
        )
        .where(_active(user_id, now))
        .order_by(Session.last_active_at.desc(), Session.id.desc())
        .limit(page_size)
        .offset((page - 1) * page_size)
        .tuples()
    )


def count_query(user_id: str, now: dt.datetime) -> peewee.Query:
    """Whether the user exists, and how many active sessions they have, in one round trip."""
    exists = User.select(peewee.fn.COUNT(peewee.SQL("*"))).where(User.id == user_id)
    total = Session.select(peewee.fn.COUNT(peewee.SQL("*"))).where(_active(user_id, now))
    return (
        peewee.Select(columns=[exists.alias("user_exists"), total.alias("total")])
        .bind(database_proxy)
        .tuples()
    )


def find_active_sessions(user_id: str, now: dt.datetime, page: int, page_size: int) -> SessionPage | None:
    """A page of the user's active sessions, or None when there is no such user.

    The common case is one statement: the page carries its own total (a window count, so page and total
    come from the same snapshot). Only an empty page needs a second look, to tell "no such user" from
    "no sessions" or "past the last page".
    """

    def read() -> SessionPage | None:
        rows = list(page_query(user_id, now, page, page_size))
        if rows:
            return SessionPage(total=rows[0][-1], rows=[row[:-1] for row in rows])
        user_exists, total = next(iter(count_query(user_id, now)))
        if not user_exists:
            return None
        return SessionPage(total=total, rows=[])

    return run_read(read)
