"""Rows for tests, written through the models with explicit times (naive UTC)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from autional_sessions.db.clock import utc_now
from autional_sessions.db.models import Session, User

utcnow = utc_now


def add_user(user_id: str, tenant_id: str = "tnt_test") -> User:
    return User.create(id=user_id, tenant_id=tenant_id, created_at=utcnow())


def add_session(session_id: str, user_id: str, **overrides: Any) -> Session:
    now = utcnow()
    values: dict[str, Any] = {
        "id": session_id,
        "user": user_id,
        "tenant_id": "tnt_test",
        "status": "active",
        "amr": "password,totp",
        "authenticated_at": now - dt.timedelta(hours=2),
        "created_at": now - dt.timedelta(hours=2),
        "expires_at": now + dt.timedelta(hours=22),
        "idle_expires_at": now + dt.timedelta(hours=1),
        "last_active_at": now - dt.timedelta(minutes=5),
        "ip": "192.0.2.10",
        "geoip": "Berlin, DE",
        "device_id": f"dev_{session_id}",
        "device_type": "desktop",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
    }
    values.update(overrides)
    return Session.create(**values)
