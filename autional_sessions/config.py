"""Configuration: one object, built once from the environment and validated there.

Every setting is read here and nowhere else, so a bad value stops the process at start-up with a message
that names the variable, instead of surfacing as a 500 on some later request.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from autional_sessions import SERVICE_NAME
from autional_sessions.db.url import DatabaseUrl, redact

if TYPE_CHECKING:
    from limits import RateLimitItem

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_DATABASE_URL = "sqlite:///autional-sessions.db"
# RFC 7518 §3.2: an HMAC key must be at least as long as the hash output.
MIN_HS_SECRET_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
# Signed with a private key, verified with a public one: from a PEM file or an identity provider's JWKS.
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"})
SUPPORTED_ALGORITHMS = frozenset(MIN_HS_SECRET_BYTES) | ASYMMETRIC_ALGORITHMS


class ConfigError(ValueError):
    """A setting from the environment is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    # Its password must not show in a repr or a log line: `db.url.redact` gives a printable form.
    database_url: str = field(default=DEFAULT_DATABASE_URL, repr=False)
    jwt_secret: str = field(default="", repr=False)
    jwt_algorithms: tuple[str, ...] = ("HS256",)
    jwt_public_key_file: str | None = None
    jwt_jwks_url: str | None = None
    # Seconds a fetched JWKS is used before it is fetched again (a key published meanwhile is fetched at
    # once, when a token names it).
    jwks_refresh_seconds: int = 300
    # Longer tokens are refused before any parsing (RFC 8725 §3.11 asks for bounded resource use).
    jwt_max_bytes: int = 8192
    tenant_claim: str = "tenant_id"
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # Seconds of clock skew tolerated on exp/nbf/iat (RFC 7519 §4.1.4 allows "a small leeway").
    jwt_leeway: int = 0
    # Verified tokens a worker keeps, so that a client's next request with its token skips the signature
    # (security/verified_tokens.py); 0 verifies every request's token in full.
    jwt_cache_size: int = 4096
    service_name: str = SERVICE_NAME
    # Relative by default (RFC 9457 allows a URI reference): a problem's type resolves against the
    # server that sent it, which serves its page. Published docs elsewhere: set their address.
    problem_base_uri: str = "/problems/"
    # Pool and timeouts (PostgreSQL); SQLite uses busy_timeout only.
    db_pool_size: int = 10
    db_pool_timeout: int = 5
    db_connect_timeout: int = 3
    db_statement_timeout_ms: int = 5000
    db_busy_timeout_ms: int = 5000
    retry_after_seconds: int = 5
    validate_responses: bool = False
    # Request counts and latencies at /metrics (Prometheus).
    metrics: bool = True
    # Requests per token subject and per client address, e.g. "120/minute"; None: no limit.
    rate_limit: str | None = None
    # Where every worker and instance counts the limits together; None: each process counts alone.
    redis_url: str | None = field(default=None, repr=False)
    # Proxies whose X-Forwarded-For names the client (addresses or networks); none by default.
    trusted_proxies: tuple[str, ...] = ()
    # Browser origins allowed to call the API (CORS); none by default.
    cors_origins: tuple[str, ...] = ()
    # JSON lines for production; "text" for a person reading a terminal.
    log_format: str = "json"
    log_level: str = "info"
    # Seconds in-flight requests get to finish after SIGTERM.
    shutdown_grace_seconds: int = 20
    # Traces exported over OTLP/HTTP, as the standard OTEL_* variables ask (`otel_export_requested`).
    otel_export: bool = False

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
            jwt_public_key_file=env.get("AUTIONAL_JWT_PUBLIC_KEY_FILE") or None,
            jwt_jwks_url=env.get("AUTIONAL_JWT_JWKS_URL") or None,
            jwks_refresh_seconds=_int(
                env, "AUTIONAL_JWKS_REFRESH_SECONDS", cls.jwks_refresh_seconds, minimum=15, maximum=86400
            ),
            jwt_max_bytes=_int(env, "AUTIONAL_JWT_MAX_BYTES", cls.jwt_max_bytes, minimum=256, maximum=65536),
            tenant_claim=env.get("AUTIONAL_TENANT_CLAIM", cls.tenant_claim).strip() or cls.tenant_claim,
            jwt_issuer=env.get("AUTIONAL_JWT_ISSUER") or None,
            jwt_audience=env.get("AUTIONAL_JWT_AUDIENCE") or None,
            jwt_leeway=_int(env, "AUTIONAL_JWT_LEEWAY", cls.jwt_leeway, minimum=0, maximum=300),
            jwt_cache_size=_int(
                env, "AUTIONAL_JWT_CACHE_SIZE", cls.jwt_cache_size, minimum=0, maximum=1_000_000
            ),
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
            metrics=_bool(env, "AUTIONAL_METRICS", cls.metrics),
            rate_limit=_rate_limit(env),
            redis_url=_redis_url(env),
            trusted_proxies=_trusted_proxies(env),
            cors_origins=_cors_origins(env),
            log_format=_choice(env, "AUTIONAL_LOG_FORMAT", cls.log_format, ("json", "text")),
            log_level=_choice(
                env, "AUTIONAL_LOG_LEVEL", cls.log_level, ("critical", "error", "warning", "info", "debug")
            ),
            shutdown_grace_seconds=_int(
                env, "AUTIONAL_SHUTDOWN_GRACE_SECONDS", cls.shutdown_grace_seconds, minimum=0, maximum=3600
            ),
            otel_export=otel_export_requested(env),
        )

    def check_signing_key(self) -> None:
        """Refuse a configuration whose tokens could never verify, naming the variable to fix.

        HMAC algorithms need a secret at least as long as their hash (RFC 7518 §3.2); public-key
        algorithms need exactly one key source, a PEM public key or a JWKS URL.
        """
        hmac = [a for a in self.jwt_algorithms if a in MIN_HS_SECRET_BYTES]
        asymmetric = [a for a in self.jwt_algorithms if a in ASYMMETRIC_ALGORITHMS]
        if hmac:
            if not self.jwt_secret:
                raise ConfigError(
                    f"AUTIONAL_JWT_SECRET is not set; {', '.join(hmac)} tokens are signed and checked with it"
                )
            needed = max(MIN_HS_SECRET_BYTES[a] for a in hmac)
            length = len(self.jwt_secret.encode())
            if length < needed:
                raise ConfigError(
                    f"AUTIONAL_JWT_SECRET is {length} bytes; {', '.join(hmac)} needs at least {needed} "
                    f"(generate one with: python -c 'import secrets; print(secrets.token_hex({needed}))')"
                )
        if asymmetric and not (self.jwt_public_key_file or self.jwt_jwks_url):
            raise ConfigError(
                f"AUTIONAL_JWT_ALGORITHMS names {', '.join(asymmetric)}, which need a public key: set "
                "AUTIONAL_JWT_PUBLIC_KEY_FILE (a PEM file) or AUTIONAL_JWT_JWKS_URL (your identity provider's JWKS)"
            )
        if self.jwt_public_key_file and self.jwt_jwks_url:
            raise ConfigError("set AUTIONAL_JWT_PUBLIC_KEY_FILE or AUTIONAL_JWT_JWKS_URL, not both")
        if (self.jwt_public_key_file or self.jwt_jwks_url) and not asymmetric:
            variable = "AUTIONAL_JWT_PUBLIC_KEY_FILE" if self.jwt_public_key_file else "AUTIONAL_JWT_JWKS_URL"
            raise ConfigError(
                f"{variable} is set but AUTIONAL_JWT_ALGORITHMS ({', '.join(self.jwt_algorithms)}) names no "
                f"public-key algorithm; add one of {', '.join(sorted(ASYMMETRIC_ALGORITHMS))}"
            )
        if self.jwt_jwks_url and not self.jwt_jwks_url.startswith(("https://", "http://")):
            raise ConfigError("AUTIONAL_JWT_JWKS_URL must be an https:// URL")


def otel_export_requested(environ: Mapping[str, str]) -> bool:
    """Whether the standard OpenTelemetry variables ask for trace export, which this service does with
    OTLP over HTTP (protobuf) only: OTEL_TRACES_EXPORTER=otlp, or an OTLP endpoint set, unless
    OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none. A setting this service cannot honour (another
    exporter, the gRPC protocol) is a ConfigError naming the variable, so that `serve` refuses to start
    rather than silently export nothing."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = {name.strip().lower() for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",")} - {""}
    if exporters - {"otlp", "none"}:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER={','.join(sorted(exporters))}: this service exports traces with otlp only"
        )
    if "otlp" in exporters:
        requested = True
    elif exporters:
        requested = False  # "none"
    else:
        requested = any(
            environ.get(name, "").strip()
            for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        )
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = environ.get(name, "").strip()
        if protocol:
            if requested and protocol != "http/protobuf":
                raise ConfigError(f"{name}={protocol}: this service exports traces with http/protobuf only")
            break  # the traces-specific variable wins over the general one
    return requested


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, "").strip().lower() or default
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())


def _rate_limit(env: Mapping[str, str]) -> str | None:
    raw = env.get("AUTIONAL_RATE_LIMIT", "").strip()
    if not raw:
        return None
    try:
        parse_limit(raw)
    except ValueError as exc:
        raise ConfigError(f"AUTIONAL_RATE_LIMIT: {exc}") from None
    return raw


def parse_limit(limit: str) -> RateLimitItem:
    """One limit in the `limits` notation, e.g. "120/minute", "10 per second", "1000/2hours"."""
    # The `limits` library comes with the server extra; every command reads this module.
    from limits import parse_many

    try:
        items = parse_many(limit)
    except ValueError:
        items = []
    # parse_many also takes "10/second;100/minute": one RateLimits enforces one limit, so more is refused
    # rather than silently cut to the first.
    if len(items) != 1 or items[0].amount < 1 or items[0].get_expiry() < 1:
        raise ValueError(
            f"rate limit {limit!r} is not one limit of the form COUNT/PERIOD with COUNT >= 1, "
            "e.g. 120/minute, 10/second or 1000 per hour"
        )
    return items[0]


def _redis_url(env: Mapping[str, str]) -> str | None:
    raw = env.get("AUTIONAL_REDIS_URL", "").strip()
    if raw and not raw.startswith(("redis://", "rediss://")):
        raise ConfigError(f"AUTIONAL_REDIS_URL must be a redis:// or rediss:// URL, not {redact(raw)!r}")
    return raw or None


def _trusted_proxies(env: Mapping[str, str]) -> tuple[str, ...]:
    proxies = _list(env, "AUTIONAL_TRUSTED_PROXIES")
    try:
        parse_networks(proxies)
    except ValueError as exc:
        raise ConfigError(f"AUTIONAL_TRUSTED_PROXIES: {exc}") from None
    return proxies


def parse_networks(trusted_proxies: Sequence[str]) -> tuple[IPNetwork, ...]:
    """The networks of proxies whose `X-Forwarded-For` is believed (addresses or CIDR networks)."""
    if isinstance(trusted_proxies, str):
        # A bare string is a sequence too, of one-character "proxies".
        raise TypeError("trusted_proxies must be a sequence of addresses or networks, not one string")
    networks: list[IPNetwork] = []
    for entry in trusted_proxies:
        try:
            # strict: "10.0.0.1/8" is refused rather than read as 10.0.0.0/8, since a typo there
            # would silently trust a whole network.
            networks.append(ipaddress.ip_network(entry.strip(), strict=True))
        except ValueError as exc:
            raise ValueError(
                f"trusted proxy {entry!r} is not an IP address or CIDR network ({exc})"
            ) from None
    return tuple(networks)


def _cors_origins(env: Mapping[str, str]) -> tuple[str, ...]:
    origins = _list(env, "AUTIONAL_CORS_ORIGINS")
    for origin in origins:
        if origin != "*" and not origin.startswith(("https://", "http://")):
            raise ConfigError(
                f"AUTIONAL_CORS_ORIGINS: {origin!r} is not an origin such as https://app.example.com (or *)"
            )
    return origins


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
