"""peewee models. The tables themselves are made by the versioned migrations in `db.migrations`."""

from __future__ import annotations

import peewee

# Bound to the real database once, at start-up, by `db.maintenance.open_database`.
database_proxy = peewee.DatabaseProxy()


class BaseModel(peewee.Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


class User(BaseModel):
    id = peewee.CharField(max_length=64, primary_key=True)
    tenant_id = peewee.CharField(max_length=64)
    created_at = peewee.DateTimeField()

    class Meta:
        table_name = "users"


class Session(BaseModel):
    """One login session. Timestamps are naive datetimes in UTC, on every engine."""

    id = peewee.CharField(max_length=64, primary_key=True)
    user = peewee.ForeignKeyField(User, column_name="user_id", backref="sessions", on_delete="CASCADE")
    tenant_id = peewee.CharField(max_length=64)
    status = peewee.CharField(max_length=16)
    amr = peewee.CharField(max_length=255)
    authenticated_at = peewee.DateTimeField()
    created_at = peewee.DateTimeField()
    expires_at = peewee.DateTimeField()
    idle_expires_at = peewee.DateTimeField()
    last_active_at = peewee.DateTimeField()
    ip = peewee.CharField(max_length=45)
    geoip = peewee.CharField(max_length=255)
    device_id = peewee.CharField(max_length=128)
    device_type = peewee.CharField(max_length=32)
    user_agent = peewee.CharField(max_length=512)
    # When the session was revoked (status 'revoked'); None for a session never revoked.
    revoked_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "sessions"


# The order of fields in a `dto.SessionResponse`, and of the columns the list query selects.
SESSION_FIELDS = (
    "id",
    "user_id",
    "tenant_id",
    "status",
    "amr",
    "authenticated_at",
    "created_at",
    "expires_at",
    "idle_expires_at",
    "last_active_at",
    "ip",
    "geoip",
    "device_id",
    "device_type",
    "user_agent",
)
SESSION_TIME_FIELDS = frozenset(
    {"authenticated_at", "created_at", "expires_at", "idle_expires_at", "last_active_at"}
)
