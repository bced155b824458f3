"""Rate limits per client address and per token subject, counted in Redis or in process memory.

Counted in Redis, every worker and every instance of the service draws on one budget per client; in
memory (no Redis configured) each worker process counts on its own, which suits one process or a test.

The limiter guards the service, it is not something a request depends on: when its storage fails (Redis
down, unreachable, too slow), requests go through unlimited and without rate-limit headers, and a
warning says so at most every 30 seconds. Every storage call is bounded in time, and after a failure the
storage is left alone for a few seconds, so a black-holed Redis adds no more than one short wait now and
then, instead of a wait to every request.

Strategy: the moving window of the `limits` library. It counts exactly the requests of the last window
length (no caller gets twice the limit by straddling the edge of a fixed window, and no estimate as the
sliding-window counter makes from the previous window's total), refused requests are not counted (a
caller that keeps hammering is not locked out for longer), and the time until a slot frees, which
`Retry-After` reports, is exact. It costs two storage calls per check (count the hit, read the window)
like the sliding-window counter, and stores one timestamp per counted request (up to the limit, per key)
instead of two counters: small for limits of a few hundred a window.

Headers follow draft-ietf-httpapi-ratelimit-headers in its three-header form (`RateLimit-Limit`,
`RateLimit-Remaining`, `RateLimit-Reset`), as the contract documents them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import coredis
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from autional_sessions.db.url import redact
from autional_sessions.http.client_address import ClientAddress
from autional_sessions.problems.factory import ProblemError
from autional_sessions.problems.languages import N_

# Named for what it logs, as operators filter on it, not after the module.
logger = logging.getLogger("autional_sessions.rate_limits")

# A check makes two round trips to Redis; together they may take this long before the request goes on
# unlimited. Redis answers in a millisecond or two when it is well, so only a sick Redis hits this.
STORAGE_TIMEOUT_SECONDS = 0.5
# After a failure the storage is not asked again for this long: requests meanwhile go through at once.
STORAGE_RETRY_SECONDS = 5.0
WARNING_INTERVAL_SECONDS = 30.0

# What a storage failure looks like: the library's wrapper of a Redis error, our own timeout, and a
# socket error (TLS, a reset) that reaches us unwrapped.
_UNAVAILABLE = (StorageError, TimeoutError, OSError)


@dataclass(frozen=True)
class Decision:
    """The outcome of one counted request, and what the caller is told about its budget."""

    allowed: bool
    limit: int
    remaining: int
    reset_after: int  # seconds until a counted request leaves the window and a slot frees

    @property
    def retry_after(self) -> int:
        # Retry-After of 0 would invite an immediate retry that is refused again.
        return max(1, self.reset_after)

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_after),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class RateLimits:
    """One limit (e.g. "120/minute"), counted separately for each (kind, identity)."""

    def __init__(
        self, limit: str, *, redis_url: str | None = None, key_prefix: str = "autional-sessions"
    ) -> None:
        self._item = parse_limit(limit)
        self._key_prefix = key_prefix
        self._redis_url = redis_url or None
        if self._redis_url:
            _storage_uri(self._redis_url)  # refuses a malformed URL now, not at the first request
        self._storage_name = redact(redis_url) if redis_url else "memory"
        # In memory the counts are plain process state, shared by every event loop. A Redis client's
        # connections belong to the event loop that opened them (used from another loop, a call waits
        # forever), so there is one client per running loop, made when a check first runs on it: a
        # server has one loop per worker; a test may start a loop per test, and gets a client each time.
        self._limiter: MovingWindowRateLimiter | None = (
            MovingWindowRateLimiter(MemoryStorage()) if self._redis_url is None else None
        )
        self._pool: coredis.ConnectionPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._resume_at = 0.0
        self._warned_at = -math.inf

    @property
    def limit(self) -> int:
        return self._item.amount

    async def check(self, kind: str, identity: str, *, cost: int = 1) -> Decision | None:
        """Count one request of `identity` (of `kind`: "ip", "sub") and decide on it; None when the
        storage is unavailable, and the request is to go through unlimited.

        `cost` counts several requests at once: an operator can spend a whole budget to lock out an
        abusive subject until its window passes (and the contract suite does, to see a 429)."""
        if time.monotonic() < self._resume_at:
            return None
        limiter = self._limiter_for_running_loop()
        try:
            async with asyncio.timeout(STORAGE_TIMEOUT_SECONDS):
                allowed = await limiter.hit(self._item, kind, identity, cost=cost)
                stats = await limiter.get_window_stats(self._item, kind, identity)
        except _UNAVAILABLE as exc:
            self._storage_failed(exc)
            return None
        return Decision(
            allowed=allowed,
            limit=self._item.amount,
            remaining=max(0, stats.remaining),
            reset_after=max(0, math.ceil(stats.reset_time - time.time())),
        )

    async def close(self) -> None:
        if self._pool is not None:
            self._disconnect()
            self._limiter = self._loop = None

    def _limiter_for_running_loop(self) -> MovingWindowRateLimiter:
        if self._redis_url is None:
            assert self._limiter is not None
            return self._limiter
        loop = asyncio.get_running_loop()
        if self._limiter is None or self._loop is not loop:
            self._disconnect()
            # The pool is ours, handed to the limits storage, so that we can close its connections.
            self._pool = coredis.ConnectionPool.from_url(self._redis_url)
            storage = RedisStorage(
                _storage_uri(self._redis_url),
                wrap_exceptions=True,
                key_prefix=self._key_prefix,
                connection_pool=self._pool,
            )
            self._limiter = MovingWindowRateLimiter(storage)
            self._loop = loop
        return self._limiter

    def _disconnect(self) -> None:
        # Closing the sockets is all a client of a loop that is gone can have: no round trip on a dead
        # loop to say goodbye.
        if self._pool is not None:
            pool, self._pool = self._pool, None
            with contextlib.suppress(RuntimeError):  # its loop may be closed already
                pool.disconnect()

    def _storage_failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._resume_at = now + STORAGE_RETRY_SECONDS
        if now - self._warned_at >= WARNING_INTERVAL_SECONDS:
            self._warned_at = now
            # Neither the identity (a user id) nor the exception text (it may quote the request) is
            # logged; the URL is shown without its password.
            logger.warning(
                "rate limit storage %s is unavailable (%s); requests go through unlimited until it is back",
                self._storage_name,
                type(exc.__cause__ if isinstance(exc, StorageError) else exc).__name__,
            )


def parse_limit(limit: str) -> RateLimitItem:
    """One limit in the `limits` notation, e.g. "120/minute", "10 per second", "1000/2hours"."""
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


def _storage_uri(redis_url: str) -> str:
    """The `limits` storage URI of a redis:// or rediss:// URL (its asyncio storages want async+)."""
    parts = urlsplit(redis_url)
    try:
        valid = parts.scheme in ("redis", "rediss") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number, or out of range
        valid = False
    if not valid:
        raise ValueError(
            f"Redis URL {redact(redis_url)!r} must be redis://HOST:PORT/DB or rediss://HOST:PORT/DB"
        )
    return f"async+{redis_url}"


class ClientRateLimitMiddleware:
    """Limits the requests of each client address; goes inside the exception middleware, which turns
    its refusal into a 429 problem response."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limits: RateLimits,
        client_address: ClientAddress,
        exempt_paths: frozenset[str] = frozenset(),
        on_refusal: Callable[[str], None] = lambda _kind: None,
    ) -> None:
        self.app = app
        self.limits = limits
        self.client_address = client_address
        self.on_refusal = on_refusal
        # Health probes come from the orchestrator every few seconds: a probe refused for its rate would
        # take a healthy instance out of service.
        self.exempt_paths = exempt_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        decision = await self.limits.check("ip", self.client_address.of(scope))
        await _apply(
            decision,
            lambda: self.on_refusal("ip"),
            N_(
                "rate-limited", "Too many requests from this client address; retry in %(retry_after)d seconds"
            ),
            self.app,
            scope,
            receive,
            send,
        )


class SubjectRateLimitMiddleware:
    """Limits the requests of each token subject; goes after Connexion's security middleware, which
    puts the verified subject in the request's context. Requests without one pass untouched."""

    def __init__(
        self, app: ASGIApp, *, limits: RateLimits, on_refusal: Callable[[str], None] = lambda _kind: None
    ) -> None:
        self.app = app
        self.limits = limits
        self.on_refusal = on_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        context = (scope.get("extensions") or {}).get("connexion_context") or {}
        subject = context.get("user")
        if scope["type"] != "http" or not isinstance(subject, str) or not subject:
            await self.app(scope, receive, send)
            return
        decision = await self.limits.check("sub", subject)
        await _apply(
            decision,
            lambda: self.on_refusal("sub"),
            N_("rate-limited", "Too many requests for this user; retry in %(retry_after)d seconds"),
            self.app,
            scope,
            receive,
            send,
        )


async def _apply(
    decision: Decision | None,
    refused: Callable[[], None],
    refusal: str,
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Refuse the request, or call `app` and mark its response with the caller's budget."""
    if decision is None:  # the storage is unavailable: the request goes on, without headers
        await app(scope, receive, send)
        return
    if not decision.allowed:
        refused()
        raise ProblemError(
            "rate-limited",
            refusal,
            args={"retry_after": decision.retry_after},
            retry_after=decision.retry_after,
            headers=decision.headers(),
        )

    async def send_with_budget(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            # Both limits apply to the request; the caller is told about the one that runs out first.
            present = headers.get("RateLimit-Remaining")
            if present is None or not present.isdigit() or int(present) > decision.remaining:
                headers.update(decision.headers())
        await send(message)

    await app(scope, receive, send_with_budget)
