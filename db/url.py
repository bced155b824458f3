"""What `AUTIONAL_DATABASE_URL` names: the engine, and where its data lives.

One parser for the request path (asyncpg, sqlite3) and the maintenance commands (peewee), so that both
reach the same database with the same options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit


@dataclass(frozen=True)
class DatabaseUrl:
    engine: str  # "sqlite" or "postgresql"
    # The URL as given, credentials and all: never in a repr, a message or a log line (see `redact`).
    raw: str = field(repr=False)
    sqlite_path: str = ""

    @classmethod
    def parse(cls, url: str) -> DatabaseUrl:
        scheme = url.partition("://")[0]
        if scheme == "sqlite":
            raw_path = urlsplit(url).path
            # sqlite:///relative.db -> "relative.db"; sqlite:////abs/path.db -> "/abs/path.db"
            path = unquote(raw_path[1:] if raw_path.startswith("/") else raw_path) or ":memory:"
            return cls("sqlite", url, sqlite_path=path)
        if scheme in ("postgres", "postgresql"):
            return cls("postgresql", url)
        raise ValueError(f"not a sqlite:// or postgresql:// URL: {redact(url)!r}")

    @property
    def options(self) -> dict[str, str]:
        """The URL's query options: libpq parameters such as sslmode or application_name."""
        return dict(parse_qsl(urlsplit(self.raw).query))

    def libpq_parameters(self) -> dict[str, object]:
        """The URL as libpq keyword parameters (psycopg), its query options (sslmode, ...) included."""
        parts = urlsplit(self.raw)
        params: dict[str, object] = dict(self.options)
        params["dbname"] = unquote(parts.path.lstrip("/"))
        if parts.hostname:
            params["host"] = unquote(parts.hostname)
        if parts.port:
            params["port"] = parts.port
        if parts.username:
            params["user"] = unquote(parts.username)
        if parts.password:
            params["password"] = unquote(parts.password)
        return params


def redact(url: str) -> str:
    """`url` with its password, if any, hidden."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        creds, _, host = rest.rpartition("@")
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url
