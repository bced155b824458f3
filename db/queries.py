"""The one place the service talks to the database: the queries behind the handlers."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import peewee

from db.engine import run_read
from db.models import SESSION_FIELDS, Session, User, database_proxy

_SESSION_COLUMNS = tuple(getattr(Session, "user_id" if f == "user_id" else f) for f in SESSION_FIELDS)


@dataclass(frozen=True)
class SessionPage:
    total: int
    rows: list[tuple]  # in SESSION_FIELDS order


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
        Session.select(*_SESSION_COLUMNS, peewee.fn.COUNT(peewee.SQL("*")).over().alias("total"))
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
