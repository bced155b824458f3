"""Deterministic demo data: users usr_0000000, usr_0000001, ... in tenant tnt_demo, with their sessions.

Every fifth session of a user cannot be listed (revoked, expired, or past its absolute or inactivity
timeout); the other four are active. Ids, devices and statuses depend only on the user's and session's
numbers; times are relative to the moment of seeding. Seeding again refreshes those times in place
(an upsert on the session id), so it never duplicates a row and the demo data never goes stale.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Callable, Iterator

import peewee

from autional_sessions.db.clock import utc_now
from autional_sessions.db.models import SESSION_FIELDS, Session, User

DEMO_TENANT = "tnt_demo"
# At most 16 columns x 2000 rows = 32000 bind parameters a statement: under both SQLite's (32766) and
# PostgreSQL's (65535) limits.
BATCH_ROWS = 2000

_DEVICES = (
    (
        "desktop",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    ),
    (
        "desktop",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    ),
    ("desktop", "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"),
    (
        "mobile",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    ),
    (
        "mobile",
        "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    ),
    (
        "tablet",
        "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    ),
)
_PLACES = (
    "Beijing, CN",
    "Shanghai, CN",
    "Berlin, DE",
    "San Francisco, US",
    "London, GB",
    "Singapore, SG",
    "São Paulo, BR",
)
_AMR = ("password", "password,totp", "webauthn", "password,sms")
# Documentation address ranges (RFC 5737): realistic-looking IPs that belong to nobody.
_NETS = ("192.0.2", "198.51.100", "203.0.113")
_INACTIVE = ("revoked", "expired", "absolute-timeout", "idle-timeout")


def user_id(n: int) -> str:
    return f"usr_{n:07d}"


def session_rows(user_number: int, sessions: int, now: dt.datetime) -> Iterator[tuple]:
    """The user's sessions as tuples in SESSION_FIELDS order; times are naive UTC."""
    rnd = random.Random(user_number)
    uid = user_id(user_number)
    for s in range(sessions):
        device_type, agent = rnd.choice(_DEVICES)
        authenticated = now - dt.timedelta(minutes=rnd.randint(60, 10 * 24 * 60))
        last_active = now - dt.timedelta(minutes=rnd.randint(0, 48 * 60))
        last_active = max(last_active, authenticated)
        status, expires, idle_expires = (
            "active",
            authenticated + dt.timedelta(days=30),
            last_active + dt.timedelta(days=7),
        )
        if s % 5 == 4:  # every fifth session cannot be listed, for one of four reasons
            reason = _INACTIVE[(s // 5) % len(_INACTIVE)]
            if reason in ("revoked", "expired"):
                status = reason
            elif reason == "absolute-timeout":
                expires = now - dt.timedelta(minutes=rnd.randint(1, 600))
            else:
                idle_expires = now - dt.timedelta(minutes=rnd.randint(1, 600))
        yield (
            f"sess_{user_number:07d}_{s:03d}",
            uid,
            DEMO_TENANT,
            status,
            rnd.choice(_AMR),
            authenticated,
            authenticated,
            expires,
            idle_expires,
            last_active,
            f"{rnd.choice(_NETS)}.{rnd.randint(1, 254)}",
            rnd.choice(_PLACES),
            f"dev_{user_number:07d}_{rnd.randrange(16**6):06x}",
            device_type,
            agent,
        )


def seed(
    database: peewee.Database,
    users: int,
    sessions_per_user: int,
    *,
    now: dt.datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
    first_user: int = 0,
) -> int:
    """Upsert the demo users and their sessions; returns the number of session rows written.

    The users are numbered from `first_user`, so that a benchmark can add a few users with many more
    sessions after the others.
    """
    now = now.replace(tzinfo=None, microsecond=0) if now else utc_now()
    # Every column but the id is rewritten on a re-seed; a session revoked since is as seeded again.
    fields = [getattr(Session, "user" if f == "user_id" else f) for f in SESSION_FIELDS] + [
        Session.revoked_at
    ]
    preserve = [f for f in fields if f is not Session.id]
    written = 0
    total = users * sessions_per_user
    with database.connection_context():
        end = first_user + users
        for first in range(first_user, end, BATCH_ROWS):
            numbers = range(first, min(first + BATCH_ROWS, end))
            with database.atomic():
                User.insert_many(
                    [(user_id(n), DEMO_TENANT, now) for n in numbers],
                    fields=[User.id, User.tenant_id, User.created_at],
                ).on_conflict_ignore().execute()
                rows = ((*row, None) for n in numbers for row in session_rows(n, sessions_per_user, now))
                # Capped by rows, not by user: one user may have more sessions than a statement can bind.
                while batch := list(itertools.islice(rows, BATCH_ROWS)):
                    written += _upsert(batch, fields, preserve)
            if progress:
                progress(written, total)
    return written


def _upsert(rows: list[tuple], fields: list, preserve: list) -> int:
    Session.insert_many(rows, fields=fields).on_conflict(
        conflict_target=[Session.id], preserve=preserve
    ).execute()
    return len(rows)
