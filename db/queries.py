"""The one place the service reads sessions: the list's statements, compiled once for the engine."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import peewee

from autional_sessions.db.models import SESSION_FIELDS, SESSION_TIME_FIELDS, Session, User
from autional_sessions.db.statements import Statement, compile_query, slot
from autional_sessions.db.store import Store

DIALECTS = {"sqlite": peewee.SqliteDatabase, "postgresql": peewee.PostgresqlDatabase}


@dataclass(frozen=True)
class SessionPage:
    total: int
    items: list[dict[str, Any]]  # as the API lists them: SESSION_FIELDS, timestamps in RFC 3339


def _session_columns(postgresql: bool) -> tuple[peewee.Node, ...]:
    """The columns of a `dto.SessionResponse`, in SESSION_FIELDS order.

    PostgreSQL writes the timestamps as the API does (RFC 3339, UTC, to the second), on the server; on
    SQLite they are reshaped in Python from the stored text, which measured faster than strftime.
    """

    def column(name: str) -> peewee.Node:
        field = getattr(Session, name)
        if name not in SESSION_TIME_FIELDS or not postgresql:
            return field
        # coerce(False): peewee would otherwise parse the text back with the field's converter.
        return peewee.fn.to_char(field, 'YYYY-MM-DD"T"HH24:MI:SS"Z"').coerce(False).alias(name)

    return tuple(column(name) for name in SESSION_FIELDS)


def sqlite_items(rows: list[tuple]) -> list[dict[str, Any]]:
    """SQLite's rows (SESSION_FIELDS order) as the API's items, in one pass: each a dict display, its
    timestamps reshaped from SQLite's text ("YYYY-MM-DD HH:MM:SS[.ffffff]") to RFC 3339 UTC. Written out
    field by field: a row tuple reshaped, then zipped with the names into a dict, took twice as long, and
    this was the largest share of a request after the statement itself. (A test holds it to
    SESSION_FIELDS.)"""
    return [
        {
            "id": r[0],
            "user_id": r[1],
            "tenant_id": r[2],
            "status": r[3],
            "amr": r[4],
            "authenticated_at": f"{r[5][:10]}T{r[5][11:19]}Z",
            "created_at": f"{r[6][:10]}T{r[6][11:19]}Z",
            "expires_at": f"{r[7][:10]}T{r[7][11:19]}Z",
            "idle_expires_at": f"{r[8][:10]}T{r[8][11:19]}Z",
            "last_active_at": f"{r[9][:10]}T{r[9][11:19]}Z",
            "ip": r[10],
            "geoip": r[11],
            "device_id": r[12],
            "device_type": r[13],
            "user_agent": r[14],
        }
        for r in rows
    ]


def postgres_items(rows: list[Any]) -> list[dict[str, Any]]:
    """PostgreSQL's rows (SESSION_FIELDS order, timestamps formatted by to_char, then the window's total)
    as the API's items."""
    return [dict(zip(SESSION_FIELDS, row[:-1], strict=True)) for row in rows]


def active(user_id: object, now: object, tenant: object | None) -> peewee.Expression:
    """NIST SP 800-63B: a session lives until its absolute timeout and its inactivity timeout. With a
    tenant, only the sessions stored under that tenant."""
    active = (
        (Session.user == user_id)
        & (Session.status == "active")
        & (Session.expires_at > now)
        & (Session.idle_expires_at > now)
    )
    return active if tenant is None else active & (Session.tenant_id == tenant)


def page_query(
    postgresql: bool,
    user_id: object,
    now: object,
    limit: object,
    offset: object,
    tenant: object | None = None,
) -> peewee.Query:
    """One page of the user's active sessions, newest activity first.

    On PostgreSQL each row carries the total count too (a window count: page and total from the same
    snapshot, in one round trip). On SQLite, where a statement is a function call rather than a round
    trip, the window's sort cost more than a separate count, which the page often makes unnecessary.
    The values are slots (`statements.slot`) when compiled for the request path, real values in a test.
    """
    total = (peewee.fn.COUNT(peewee.SQL("*")).over().alias("total"),) if postgresql else ()
    return (
        Session.select(*_session_columns(postgresql), *total)
        .where(active(user_id, now, tenant))
        .order_by(Session.last_active_at.desc(), Session.id.desc())
        .limit(limit)
        .offset(offset)
        .tuples()
    )


def count_query(user_id: object, now: object, tenant: object | None = None) -> peewee.Query:
    """Whether the user exists, and how many active sessions they have, in one round trip."""
    exists = User.select(peewee.fn.COUNT(peewee.SQL("*"))).where(User.id == user_id)
    total = Session.select(peewee.fn.COUNT(peewee.SQL("*"))).where(active(user_id, now, tenant))
    return peewee.Select(columns=[exists.alias("user_exists"), total.alias("total")]).tuples()


def session_active_query(user_id: object, session_id: object, now: object) -> peewee.Query:
    """Whether a session of the user is still active (the `sid` of a token must name one)."""
    return Session.select(Session.id).where(active(user_id, now, None) & (Session.id == session_id)).tuples()


def user_tenant_query(user_id: object) -> peewee.Query:
    return User.select(User.tenant_id).where(User.id == user_id).tuples()


@dataclass(frozen=True)
class ListStatements:
    page: Statement
    count: Statement


def list_statements(dialect: str, *, in_tenant: bool = False) -> ListStatements:
    """The page and count statements, compiled for `dialect` ("sqlite" or "postgresql"), optionally
    restricted to the sessions of one tenant."""
    database = DIALECTS[dialect](None)
    postgresql = dialect == "postgresql"
    user_id, now = slot("user_id"), slot("now")
    tenant = slot("tenant") if in_tenant else None
    page = page_query(postgresql, user_id, now, slot("limit"), slot("offset"), tenant)
    return ListStatements(
        compile_query(page, database), compile_query(count_query(user_id, now, tenant), database)
    )


class OtherTenant(Exception):
    """The user exists, but belongs to another tenant than the caller's."""


class SessionQueries:
    """The list's queries over one store, their statements compiled when the app is built."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._any_tenant = list_statements(store.dialect)
        self._one_tenant = list_statements(store.dialect, in_tenant=True)
        database = DIALECTS[store.dialect](None)
        self._user_tenant = compile_query(user_tenant_query(slot("user_id")), database)
        self._ping = Statement("SELECT 1", ())
        self._session_active = compile_query(
            session_active_query(slot("user_id"), slot("session_id"), slot("now")), database
        )
        self._windowed = store.dialect == "postgresql"
        # Timestamps are naive UTC on every engine: a datetime for asyncpg's TIMESTAMP parameters, and
        # for SQLite the text its columns hold ("YYYY-MM-DD HH:MM:SS"), which compares as it sorts.
        self._bind_time = (lambda t: t) if self._windowed else (lambda t: t.isoformat(" "))

    async def ping(self) -> None:
        """One round trip to the database (raises `DatabaseUnavailable` when it cannot serve)."""
        await self._store.fetch(self._ping, ())

    async def user_exists(self, user_id: str) -> bool:
        return bool(await self._store.fetch(self._user_tenant, self._user_tenant.bind({"user_id": user_id})))

    async def check_tenant(self, user_id: str, tenant: str) -> None:
        """Raise `OtherTenant` when the user exists and belongs to another tenant than `tenant`."""
        found = await self._store.fetch(self._user_tenant, self._user_tenant.bind({"user_id": user_id}))
        if found and found[0][0] != tenant:
            raise OtherTenant

    async def is_session_active(self, user_id: str, session_id: str, now: dt.datetime) -> bool:
        values = {"user_id": user_id, "session_id": session_id, "now": self._bind_time(now)}
        return bool(await self._store.fetch(self._session_active, self._session_active.bind(values)))

    async def find_active_sessions(
        self, user_id: str, now: dt.datetime, page: int, page_size: int, tenant: str | None = None
    ) -> SessionPage | None:
        """A page of the user's active sessions, or None when there is no such user.

        With a tenant (the caller's token names one), the user must belong to it (else `OtherTenant`,
        decided before any session is read) and only sessions stored under it are listed.

        Only an empty page always needs the count statement, to tell "no such user" from "no sessions"
        or "past the last page". On SQLite the page asks for one row more than it shows: when that row
        is not there, this is the last page and its total is known; only when it is does the count run.
        """
        offset = (page - 1) * page_size
        values = {
            "user_id": user_id,
            "now": self._bind_time(now),
            "limit": page_size if self._windowed else page_size + 1,
            "offset": offset,
            "tenant": tenant,
        }
        statements = self._any_tenant if tenant is None else self._one_tenant
        async with self._store.snapshot():
            if tenant is not None:
                found = await self._store.fetch(self._user_tenant, self._user_tenant.bind(values))
                if not found:
                    return None
                if found[0][0] != tenant:
                    raise OtherTenant
            rows = await self._store.fetch(statements.page, statements.page.bind(values))
            if rows and self._windowed:
                return SessionPage(total=rows[0][-1], items=postgres_items(rows))
            items = sqlite_items(rows[:page_size])
            if rows and len(rows) <= page_size:  # the last page
                return SessionPage(total=offset + len(items), items=items)
            count = statements.count
            ((user_exists, total),) = await self._store.fetch(count, count.bind(values))
        if not user_exists:
            return None
        return SessionPage(total=total, items=items)
