"""Signing sessions out: each revocation marks the row (status 'revoked', and when) in one statement
that only touches a session still active, so two revocations racing for one session revoke it once,
and revoking all racing with revoking one counts every session once. Nothing is deleted: the rows stay
as the audit trail."""

from __future__ import annotations

import datetime as dt

import peewee

from autional_sessions.db.models import Session
from autional_sessions.db.queries import DIALECTS, active
from autional_sessions.db.statements import Statement, compile_query, slot
from autional_sessions.db.store import Store


def revoke_query(user_id: object, session_id: object, now: object, tenant: object | None) -> peewee.Query:
    return (
        Session.update(status="revoked", revoked_at=now)
        .where(active(user_id, now, tenant) & (Session.id == session_id))
        .returning(Session.id)
        .tuples()
    )


def revoke_others_query(
    user_id: object, keep: object | None, now: object, tenant: object | None
) -> peewee.Query:
    condition = active(user_id, now, tenant)
    if keep is not None:
        condition &= Session.id != keep
    return (
        Session.update(status="revoked", revoked_at=now)
        .where(condition)
        .returning(Session.id, Session.last_active_at)
        .tuples()
    )


class SessionRevocations:
    """The revocation statements over one store, compiled when the app is built."""

    def __init__(self, store: Store) -> None:
        self._store = store
        database = DIALECTS[store.dialect](None)
        user_id, session_id, now = slot("user_id"), slot("session_id"), slot("now")
        self._one: dict[bool, Statement] = {}
        self._others: dict[tuple[bool, bool], Statement] = {}
        for in_tenant in (False, True):
            tenant = slot("tenant") if in_tenant else None
            self._one[in_tenant] = compile_query(revoke_query(user_id, session_id, now, tenant), database)
            for keeping in (False, True):
                keep = slot("keep") if keeping else None
                query = revoke_others_query(user_id, keep, now, tenant)
                self._others[(in_tenant, keeping)] = compile_query(query, database)
        # Naive UTC on every engine: a datetime for asyncpg, SQLite's stored text form otherwise.
        self._bind_time = (lambda t: t) if store.dialect == "postgresql" else (lambda t: t.isoformat(" "))

    async def revoke(self, user_id: str, session_id: str, now: dt.datetime, tenant: str | None) -> bool:
        """Revoke one of the user's active sessions; False when the user has no such active session
        (already revoked, expired, someone else's, or none at all: the caller cannot tell which)."""
        statement = self._one[tenant is not None]
        values = {"user_id": user_id, "session_id": session_id, "now": self._bind_time(now), "tenant": tenant}
        return bool(await self._store.write(statement, statement.bind(values)))

    async def revoke_others(
        self, user_id: str, keep: str | None, now: dt.datetime, tenant: str | None
    ) -> list[str]:
        """Revoke every active session of the user but `keep` (all of them when None); their ids, in the
        list's order (most recent activity first, then id descending)."""
        statement = self._others[(tenant is not None, keep is not None)]
        values = {"user_id": user_id, "keep": keep, "now": self._bind_time(now), "tenant": tenant}
        rows = await self._store.write(statement, statement.bind(values))
        # (last_active_at, id) sort alike on either engine: datetimes, or SQLite's ISO 8601 text.
        return [session_id for session_id, _ in sorted(rows, key=lambda row: (row[1], row[0]), reverse=True)]
