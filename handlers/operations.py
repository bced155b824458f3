"""Handlers of the Operations probes: liveness touches nothing; readiness asks the database."""

from __future__ import annotations

import asyncio
from typing import Any

from autional_sessions.db.errors import DatabaseUnavailable
from autional_sessions.db.queries import SessionQueries

# A probe answers within this bound, whatever the database does.
READINESS_TIMEOUT_SECONDS = 2.0


async def check_health() -> tuple[dict[str, Any], int]:
    """GET /healthz: the process serves requests."""
    return {"status": "ok"}, 200


async def check_readiness(sessions: SessionQueries) -> tuple[dict[str, Any], int]:
    """GET /readyz: the database answers, within the bound."""
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
            await sessions.ping()
    except TimeoutError:
        raise DatabaseUnavailable("no answer within the readiness bound") from None
    return {"status": "ok"}, 200
