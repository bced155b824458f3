"""Handlers of the Session Management operations.

Connexion has already authenticated the caller (`user` is the token's `sub`) and validated and typed
every parameter against the spec by the time these run, so they hold only the business rules.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from autional_sessions.problems import ProblemError, utc_timestamp
from db.models import SESSION_FIELDS
from db.queries import OtherTenant, SessionQueries


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
    # Decided before any lookup, so that nobody learns from the answer whether another user exists.
    if user != user_id:
        raise ProblemError("user-mismatch", "The token does not belong to the user in the path")
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    try:
        found = await sessions.find_active_sessions(
            user_id, now, page, page_size, tenant=token_info.get(tenant_claim)
        )
    except OtherTenant:
        raise ProblemError(
            "tenant-mismatch", "The user in the path does not belong to the token's tenant"
        ) from None
    if found is None:
        raise ProblemError("user-not-found", "No user with this ID exists")
    total_pages = math.ceil(found.total / page_size)
    body = {
        "code": 0,
        "message": "success",
        "timestamp": utc_timestamp(now),
        "total": found.total,
        "items": [dict(zip(SESSION_FIELDS, row, strict=True)) for row in found.rows],
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
