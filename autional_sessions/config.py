"""Configuration: one object, built once from the environment and validated there.

Every setting is read here and nowhere else, so a bad value stops the process at start-up with a message
that names the variable, instead of surfacing as a 500 on some later request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from autional_sessions import SERVICE_NAME
from db.url import DatabaseUrl, redact

DEFAULT_DATABASE_URL = "sqlite:///autional-sessions.db"
# RFC 7518 §3.2: an HMAC key must be at least as long as the hash output.
MIN_HS_SECRET_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
# HMAC only for now: one shared secret signs and verifies. Public-key algorithms need a key set of their
# own (RFC 8725 §3.1: never let one key serve two algorithm families), which this service does not have yet.
SUPPORTED_ALGORITHMS = frozenset(MIN_HS_SECRET_BYTES)


class ConfigError(ValueError):
    """A setting from the environment is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    jwt_secret: str = field(default="", repr=False)
    jwt_algorithms: tuple[str, ...] = ("HS256",)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # Seconds of clock skew tolerated on exp/nbf/iat (RFC 7519 §4.1.4 allows "a small leeway").
    jwt_leeway: int = 0
    service_name: str = SERVICE_NAME
    problem_base_uri: str = "https://autional.com/problems/"
    # Pool and timeouts (PostgreSQL); SQLite uses busy_timeout only.
    db_pool_size: int = 10
    db_pool_timeout: int = 5
    db_connect_timeout: int = 3
    db_statement_timeout_ms: int = 5000
    db_busy_timeout_ms: int = 5000
    retry_after_seconds: int = 5
    validate_responses: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        algorithms = tuple(
            a.strip() for a in env.get("AUTIONAL_JWT_ALGORITHMS", "HS256").split(",") if a.strip()
        )
        if not algorithms:
            raise ConfigError("AUTIONAL_JWT_ALGORITHMS must name at least one algorithm, e.g. HS256")
        unknown = sorted(set(algorithms) - SUPPORTED_ALGORITHMS)
        if unknown:
            raise ConfigError(
                f"AUTIONAL_JWT_ALGORITHMS has unsupported algorithm(s) {', '.join(unknown)}; "
                f"choose from {', '.join(sorted(SUPPORTED_ALGORITHMS))} ('none' is never accepted)"
            )
        database_url = env.get("AUTIONAL_DATABASE_URL", DEFAULT_DATABASE_URL).strip()
        try:
            DatabaseUrl.parse(database_url)
        except ValueError:
            raise ConfigError(
                "AUTIONAL_DATABASE_URL must be a sqlite:///PATH or postgresql://USER@HOST:PORT/NAME URL, "
                f"not {redact(database_url)!r}"
            ) from None
        problem_base_uri = env.get("AUTIONAL_PROBLEM_BASE_URI", cls.problem_base_uri)
        if not problem_base_uri.endswith("/"):
            problem_base_uri += "/"
        return cls(
            database_url=database_url,
            jwt_secret=env.get("AUTIONAL_JWT_SECRET", ""),
            jwt_algorithms=algorithms,
            jwt_issuer=env.get("AUTIONAL_JWT_ISSUER") or None,
            jwt_audience=env.get("AUTIONAL_JWT_AUDIENCE") or None,
            jwt_leeway=_int(env, "AUTIONAL_JWT_LEEWAY", cls.jwt_leeway, minimum=0, maximum=300),
            service_name=env.get("AUTIONAL_SERVICE_NAME", SERVICE_NAME),
            problem_base_uri=problem_base_uri,
            db_pool_size=_int(env, "AUTIONAL_DB_POOL_SIZE", cls.db_pool_size, minimum=1, maximum=1000),
            db_pool_timeout=_int(env, "AUTIONAL_DB_POOL_TIMEOUT", cls.db_pool_timeout, minimum=1),
            db_connect_timeout=_int(env, "AUTIONAL_DB_CONNECT_TIMEOUT", cls.db_connect_timeout, minimum=1),
            db_statement_timeout_ms=_int(
                env, "AUTIONAL_DB_STATEMENT_TIMEOUT_MS", cls.db_statement_timeout_ms, minimum=1
            ),
            db_busy_timeout_ms=_int(env, "AUTIONAL_DB_BUSY_TIMEOUT_MS", cls.db_busy_timeout_ms, minimum=0),
            retry_after_seconds=_int(env, "AUTIONAL_RETRY_AFTER", cls.retry_after_seconds, minimum=1),
            validate_responses=_bool(env, "AUTIONAL_VALIDATE_RESPONSES", cls.validate_responses),
        )

    def check_signing_key(self) -> None:
        """Refuse a key too short for the configured algorithms (RFC 7518 §3.2)."""
        if not self.jwt_secret:
            raise ConfigError(
                "AUTIONAL_JWT_SECRET is not set; it is the key tokens are signed and checked with"
            )
        needed = max(MIN_HS_SECRET_BYTES[a] for a in self.jwt_algorithms)
        length = len(self.jwt_secret.encode())
        if length < needed:
            raise ConfigError(
                f"AUTIONAL_JWT_SECRET is {length} bytes; {', '.join(self.jwt_algorithms)} needs at least {needed} "
                f"(generate one with: python -c 'import secrets; print(secrets.token_hex({needed}))')"
            )


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigError(f"{name} must be {bound}, not {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")
