"""Handlers of the Session Management operations.

Connexion has already authenticated the caller (`user` is the token's `sub`, `token_info` its claims;
a token whose `sid` names a session that has ended never gets here) and validated and typed every
parameter against the spec by the time these run, so they hold only the business rules.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
from typing import Any

from autional_sessions.db.clock import utc_now
from autional_sessions.db.queries import OtherTenant, SessionQueries
from autional_sessions.db.revocations import SessionRevocations
from autional_sessions.observability.request_context import current_request
from autional_sessions.problems.factory import ProblemError, utc_timestamp
from autional_sessions.problems.languages import N_

audit = logging.getLogger("autional_sessions.audit")
# The spec's maxItems of dto.RevokeSessionsResponse.revoked_ids: a revocation's answer stays as bounded
# as a page of the list, however many sessions it revoked.
LISTED_REVOKED_IDS = 100


def _own_user(user_id: str, user: str) -> None:
    # Decided before any lookup, so that nobody learns from the answer whether another user exists.
    if user != user_id:
        raise ProblemError(
            "user-mismatch", N_("user-mismatch", "The token does not belong to the user in the path")
        )


def _other_tenant() -> ProblemError:
    return ProblemError(
        "tenant-mismatch", N_("tenant-mismatch", "The user in the path does not belong to the token's tenant")
    )


def _no_user(user_id: str) -> ProblemError:
    return ProblemError(
        "user-not-found",
        N_("user-not-found", "No user with the ID %(user_id)s exists"),
        args={"user_id": user_id},
    )


async def list_user_sessions(
    user_id: str,
    user: str,
    token_info: dict[str, Any],
    sessions: SessionQueries,
    tenant_claim: str,
    page: int = 1,
    page_size: int = 20,
) -> tuple[dict[str, Any], int]:
    """GET /sessions/user/{user_id}/sessions: the caller's own active sessions, a page at a time."""
    _own_user(user_id, user)
    now = utc_now()
    try:
        found = await sessions.find_active_sessions(
            user_id, now, page, page_size, tenant=token_info.get(tenant_claim)
        )
    except OtherTenant:
        raise _other_tenant() from None
    if found is None:
        raise _no_user(user_id)
    items = found.items
    current = token_info.get("sid")
    if current is not None:
        for item in items:
            item["current"] = item["id"] == current
    total_pages = math.ceil(found.total / page_size)
    body = {
        "code": 0,
        "message": "success",
        "timestamp": utc_timestamp(now),
        "total": found.total,
        "items": items,
        "pagination": {
            "page": page,
            "page_size": page_size,
            "total": found.total,
            "total_pages": total_pages,
            "has_next": page < total_pages,
            "has_prev": page > 1,
        },
    }
    return body, 200


async def revoke_session(
    user_id: str,
    session_id: str,
    user: str,
    token_info: dict[str, Any],
    sessions: SessionQueries,
    revocations: SessionRevocations,
    tenant_claim: str,
) -> tuple[None, int]:
    """DELETE /sessions/user/{user_id}/sessions/{session_id}: sign one device out."""
    _own_user(user_id, user)
    tenant = await _checked_tenant(sessions, user_id, token_info.get(tenant_claim))
    now = utc_now()
    if not await revocations.revoke(user_id, session_id, now, tenant):
        # The session id stays out of the problem: it is a credential of the device it names.
        raise ProblemError(
            "session-not-found", N_("session-not-found", "You have no active session with this ID")
        )
    _audit(user_id, [session_id], now)
    return None, 204


async def revoke_other_sessions(
    user_id: str,
    user: str,
    token_info: dict[str, Any],
    sessions: SessionQueries,
    revocations: SessionRevocations,
    tenant_claim: str,
) -> tuple[dict[str, Any], int]:
    """POST /sessions/user/{user_id}/sessions/revocations: sign every other device out, and say which."""
    _own_user(user_id, user)
    tenant = await _checked_tenant(sessions, user_id, token_info.get(tenant_claim))
    now = utc_now()
    current = token_info.get("sid")
    revoked = await revocations.revoke_others(user_id, current, now, tenant)
    if not revoked and not await sessions.user_exists(user_id):
        raise _no_user(user_id)
    _audit(user_id, revoked, now)
    body = {
        "code": 0,
        "message": "success",
        "timestamp": utc_timestamp(now),
        "revoked": len(revoked),
        "revoked_ids": revoked[:LISTED_REVOKED_IDS],
    }
    if current is not None:
        body["current_id"] = current
    return body, 200


async def _checked_tenant(sessions: SessionQueries, user_id: str, tenant: str | None) -> str | None:
    """The token's tenant, once the user is known to belong to it (403 otherwise, before any session is
    touched); None for a token that names no tenant."""
    if tenant is not None:
        try:
            await sessions.check_tenant(user_id, tenant)
        except OtherTenant:
            raise _other_tenant() from None
    return tenant


def _audit(user_id: str, session_ids: list[str], when: dt.datetime) -> None:
    """One structured audit event per revoked session. The session is named by a digest of its id:
    raw session ids never go to the log, and the digest of a known id finds its event."""
    request_id = current_request().request_id
    for session_id in session_ids:
        audit.info(
            "session revoked",
            extra={
                "event": "session.revoked",
                "actor": user_id,
                "session_ref": hashlib.sha256(session_id.encode()).hexdigest()[:16],
                "at": utc_timestamp(when),
                "request_id": request_id,
            },
        )
