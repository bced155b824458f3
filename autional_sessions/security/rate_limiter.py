"""The limiter: one limit (say "120/minute") counted per key, in Redis or in process memory. The HTTP
layer applies it per client address and per token subject (`http.rate_limits`).

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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import coredis
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from autional_sessions.config import parse_limit
from autional_sessions.db.url import redact

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
        """draft-ietf-httpapi-ratelimit-headers in its three-header form, as the contract documents them."""
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
