"""The limiter: one limit (say "120/minute") counted per key, in Redis or in process memory. The HTTP
layer applies it per client address and per token subject (`http.rate_limits`).

Counted in Redis, every worker and every instance of the service draws on one budget per client; in
memory (no Redis configured) each worker process counts on its own, which suits one process or a test.

The limiter guards the service, it is not something a request depends on: when its storage fails (Redis
down, unreachable, too slow), requests go through unlimited and without rate-limit headers, and a
warning says so at most every 30 seconds. Every storage call is bounded in time, and after a failure the
storage is left alone for a few seconds, so a black-holed Redis adds no more than one short wait now and
then, instead of a wait to every request.

Strategy: the sliding-window counter of the `limits` library. Each key keeps two counters, the current
window's and the previous one's, and a request is allowed while the previous window's count, weighted by
the share of it that still lies within one window length of now, plus the current window's count stays
within the limit. Two integers a key whatever the limit (the moving window it replaces stored one
timestamp per counted request and moved them all on each hit), and refused requests are not counted. It
estimates, assuming the previous window's requests came evenly: a caller that sent its whole budget at the
very end of one window gets, at the start of the next, only what the weighting frees (little at first, the
whole budget once a window has passed), so it is never allowed twice the limit across an edge as a fixed
window allows; one whose previous window's requests came early is held back a little longer than an exact
moving window would. A window starts with a key's first request. In Redis
the arithmetic of `limits`' scripts runs in one Lua script for every key of a request (address and
subject), so a request costs one round trip; in memory, the same arithmetic on a dict (`limits`' own
`MemoryStorage` took 95 us a request for the two keys, against 14 us here, on the bench machine).

Headers follow draft-ietf-httpapi-ratelimit-headers in its three-header form (`RateLimit-Limit`,
`RateLimit-Remaining`, `RateLimit-Reset`), as the contract documents them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple
from urllib.parse import urlsplit

import coredis
from coredis.exceptions import RedisError
from limits import RateLimitItem

from autional_sessions.config import parse_limit
from autional_sessions.db.url import redact

# Named for what it logs, as operators filter on it, not after the module.
logger = logging.getLogger("autional_sessions.rate_limits")

# A check waits for Redis at most this long, from the moment it asks, before the request goes on
# unlimited: the call it joins gets what is left of the oldest waiting hit's time (`_RedisCounter._send`).
# Redis answers in a millisecond or two when it is well, so only a sick Redis hits this.
STORAGE_TIMEOUT_SECONDS = 0.5
# After a failure the storage is not asked again for this long: requests meanwhile go through at once.
STORAGE_RETRY_SECONDS = 5.0
WARNING_INTERVAL_SECONDS = 30.0

# What a storage failure looks like: a Redis error, our own timeout, and a socket error (TLS, a reset)
# that reaches us unwrapped.
_UNAVAILABLE = (RedisError, TimeoutError, OSError)

# Stands for a key's own part in `limits`' name of a key, to find the parts around it (`_RedisCounter`).
_KEY_MARK = "\x00"

# The sliding-window counter of `limits` (its acquire_sliding_window.lua and sliding_window.lua, as one
# script), for each pair of KEYS (a key's previous and current window) in one call. Times in milliseconds.
# The current window starts with the first hit and lives two window lengths; once it is older than one,
# it becomes the previous window and a new current one starts. Returns, for each pair: allowed (1 or 0),
# then the previous count and time to live, and the current count and time to live, after the hit.
_SLIDING_WINDOW_LUA = """
local limit = tonumber(ARGV[1])
local expiry = tonumber(ARGV[2]) * 1000
local amount = tonumber(ARGV[3])
local result = {}
for i = 1, #KEYS, 2 do
    local previous, current = KEYS[i], KEYS[i + 1]
    local current_ttl = tonumber(redis.call('pttl', current))
    if current_ttl > 0 and current_ttl < expiry then
        redis.call('rename', current, previous)
        redis.call('set', current, 0, 'PX', current_ttl + expiry)
    end
    local previous_count = tonumber(redis.call('get', previous)) or 0
    local previous_ttl = math.max(tonumber(redis.call('pttl', previous)), 0)
    local current_count = tonumber(redis.call('get', current)) or 0
    current_ttl = math.max(tonumber(redis.call('pttl', current)), 0)
    local allowed = 0
    if amount <= limit and math.floor(previous_count * previous_ttl / expiry) + current_count + amount <= limit then
        allowed = 1
        if current_ttl > 0 then
            redis.call('incrby', current, amount)
        else
            current_ttl = expiry * 2
            redis.call('set', current, amount, 'PX', current_ttl)
        end
        current_count = current_count + amount
    end
    result[#result + 1] = {allowed, previous_count, previous_ttl, current_count, current_ttl}
end
return result
"""


class Decision(NamedTuple):
    """The outcome of one counted request, and what the caller is told about its budget. (A named tuple:
    two are made for every request, and a frozen dataclass costs several times as much to make.)"""

    allowed: bool
    limit: int
    remaining: int
    reset_after: int  # seconds until the weighted count drops and a slot frees

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

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """`headers` as an ASGI message carries them: lower-case names, bytes."""
        raw = [
            (b"ratelimit-limit", b"%d" % self.limit),
            (b"ratelimit-remaining", b"%d" % self.remaining),
            (b"ratelimit-reset", b"%d" % self.reset_after),
        ]
        if not self.allowed:
            raw.append((b"retry-after", b"%d" % self.retry_after))
        return raw


# What `Decision._make` does, without its length check: a named tuple from the tuple of its fields,
# without the Python frame of the generated `__new__` (a third of a key's cost in the counter).
_new_decision = tuple.__new__


def choose(found: Sequence[Decision | None]) -> tuple[int, Decision | None]:
    """Of a request's decisions (one a key, in order), the one its responses carry, and the index of the
    key that refuses it (-1 if none does): the first that refuses it (of the address and the subject,
    both over: the address, and the 429 says so), else the budget that runs out first (the later key, of
    two that run out together: the subject's). A key whose storage is unavailable (None) goes unlimited."""
    kept = None
    for index, decision in enumerate(found):
        if decision is None:
            continue
        if not decision.allowed:
            return index, decision
        if kept is None or decision.remaining <= kept.remaining:
            kept = decision
    return -1, kept


def _decision(
    item: RateLimitItem,
    allowed: bool,
    previous_count: int,
    previous_ttl: float,
    current_count: int,
    current_ttl: float,
) -> Decision:
    """A decision from a key's two windows (times to live in seconds), by the arithmetic of `limits`'
    `SlidingWindowCounterRateLimiter.get_window_stats`."""
    expiry = item.get_expiry()
    weighted = previous_count * previous_ttl / expiry + current_count
    reset_in = 0.0
    if previous_count or current_count:
        reset_in = min(
            previous_ttl % (expiry / previous_count) if previous_count else math.inf,
            current_ttl % expiry if current_count else math.inf,
        )
    return _new_decision(
        Decision,
        (allowed, item.amount, max(0, item.amount - math.floor(weighted)), max(0, math.ceil(reset_in))),
    )


class _MemoryCounter:
    """The sliding-window counter of one limit in this process's memory, as the Lua script keeps it in
    Redis: per key, when the current window started and the two windows' counts."""

    def __init__(self, item: RateLimitItem, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # The limit's terms, read once: `item.get_expiry()` on every request was a tenth of the count.
        self._limit = item.amount
        self._expiry = item.get_expiry()
        # (kind, identity) -> [current window's start, previous count, count]
        self._windows: dict[tuple[str, str], list[float]] = {}
        self._sweep_at = 0.0

    def hit(self, keys: Sequence[tuple[str, str]], cost: int) -> list[Decision | None]:
        """Each key's decision, the keys counted one after the other."""
        return [self.count((key,), cost)[1] for key in keys]

    def count(self, keys: Sequence[tuple[str, str]], cost: int) -> tuple[int, Decision | None]:
        """Count every key of a request and answer as `choose` would of their decisions, making only the
        one decision it keeps: the request's are two keys, and only one decision goes on its response."""
        # `_decision`'s arithmetic inlined, and a key's time to reset worked out only for the decision
        # kept: this runs for every request. (`int` stands for `math.floor` on the counts, which are never
        # negative.)
        now = self._clock()
        expiry = self._expiry
        twice = 2 * expiry
        limit = self._limit
        if now >= self._sweep_at:
            self._sweep(now, expiry)
        windows = self._windows
        refused = -1
        kept = None  # the kept key's window as it stands after its count, and its decision's terms
        kept_remaining = 0
        kept_allowed = True
        for index, key in enumerate(keys):
            window = windows.get(key)
            if window is None or now - window[0] >= twice:
                window = windows[key] = [now, 0, 0]
            elif now - window[0] >= expiry:  # the current window is over: it becomes the previous one
                window[0] += expiry
                window[1], window[2] = window[2], 0
            start, previous, current = window
            weighted_previous = previous * (start + expiry - now) / expiry if previous else 0.0
            allowed = cost <= limit and int(weighted_previous) + current + cost <= limit
            if allowed:
                window[2] = current = current + cost
            if refused >= 0:
                continue  # counted; the request is refused already, and its answer says by which key
            remaining = limit - int(weighted_previous + current)
            if remaining < 0:
                remaining = 0
            if not allowed or kept is None or remaining <= kept_remaining:
                kept = (start, previous, current)
                kept_remaining, kept_allowed = remaining, allowed
                if not allowed:
                    refused = index
        if kept is None:
            return refused, None
        start, previous, current = kept
        if previous:
            reset_in = (start + expiry - now) % (expiry / previous)
            if current:
                current_reset = (start + twice - now) % expiry
                if current_reset < reset_in:
                    reset_in = current_reset
        else:
            reset_in = (start + twice - now) % expiry if current else 0.0
        reset_after = math.ceil(reset_in) if reset_in > 0 else 0
        return refused, _new_decision(Decision, (kept_allowed, limit, kept_remaining, reset_after))

    def _sweep(self, now: float, expiry: int) -> None:
        # Keys whose windows have both passed, once a window: memory stays in proportion to active keys.
        self._windows = {key: w for key, w in self._windows.items() if now - w[0] < 2 * expiry}
        self._sweep_at = now + expiry

    def close(self) -> None:
        return None


class _RedisCounter:
    """The same counter in Redis, by group commit: at most one script call is in flight, and the keys of
    every request that asks meanwhile go together in the next call, made as soon as that one returns.
    An idle server's request waits for no one (its call starts in the loop iteration after it asks);
    under load each call carries what one round trip gathers, so the client's per-command cost and the
    loop's wake-ups for answers are paid once for many requests. A client's connections belong to the
    event loop that opened them, so a counter serves one loop."""

    def __init__(
        self, redis_url: str, key_prefix: str, item: RateLimitItem, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.loop = loop  # the loop its client's connections belong to, the only one it serves
        self._client = coredis.Redis.from_url(redis_url)
        self._script = self._client.register_script(_SLIDING_WINDOW_LUA)
        self._item = item
        self._limit, self._expiry = item.amount, item.get_expiry()
        # A key's two windows are `{prefix}:{K}` and `{prefix}:{K}/-1`, where K is `limits`' name for it,
        # `item.key_for(kind, identity)`; its parts around the key's own are worked out once. (One hash
        # tag for a key's two windows: on a Redis Cluster both live on one node.)
        before, _, after = item.key_for(_KEY_MARK).partition(_KEY_MARK)
        self._key_head, self._key_tail = f"{key_prefix}:{{{before}", f"{after}}}"
        # The hits waiting for the next call, by cost (the script's last argument; the limit and the window
        # are the counter's): each request's Redis keys and the future its answers go to.
        self._pending: dict[int, list[tuple[list[str], asyncio.Future]]] = {}
        # The task making the calls while there are hits to send; None when there are none.
        self._sender: asyncio.Task | None = None

    def redis_keys(self, keys: Sequence[tuple[str, str]]) -> list[str]:
        """The Redis keys of (kind, identity) keys: each one's previous window, then its current one."""
        head, tail = self._key_head, self._key_tail
        redis_keys = []
        for kind, identity in keys:
            current = f"{head}{kind}/{identity}{tail}"
            redis_keys += (f"{current}/-1", current)
        return redis_keys

    def ask(self, keys: Sequence[tuple[str, str]], cost: int) -> asyncio.Future:
        """The future of the keys' counts, made in the next script call: for each key, the script's
        answer (allowed, previous count and time to live, current count and time to live)."""
        # On its own loop (`RateLimits` makes a counter for each), which the caller has found running.
        answer: asyncio.Future = self.loop.create_future()
        self._pending.setdefault(cost, []).append((self.redis_keys(keys), answer))
        if self._sender is None:
            # Its first step runs in the next loop iteration, after every request ready in this one.
            # In a context of its own: it serves every request that asks while it runs, and holds none's
            # values (its request id, its trace) for longer than that request.
            sending = self._send(self.loop.time())
            self._sender = self.loop.create_task(sending, context=contextvars.Context())
            self._sender.add_done_callback(self._sender_finished)
        return answer

    def decisions(self, answers: Sequence[Sequence[int]]) -> list[Decision | None]:
        item = self._item
        return [
            _decision(item, bool(allowed), previous, previous_ttl / 1000, current, current_ttl / 1000)
            for allowed, previous, previous_ttl, current, current_ttl in answers
        ]

    async def _send(self, first_asked: float) -> None:
        """Send rounds of hits while there are any. `first_asked`: when the first hit of the first round
        asked (loop time); each later round's hits asked after the round before it was taken."""
        pending: dict[int, list[tuple[list[str], asyncio.Future]]] = {}
        try:
            while self._pending:
                pending, self._pending = self._pending, {}
                # No hit of this round waits longer than the timeout from the moment it asked, the call in
                # flight before it included: the round's calls share one deadline.
                deadline, first_asked = first_asked + STORAGE_TIMEOUT_SECONDS, self.loop.time()
                for cost, hits in pending.items():  # a cost other than 1 is an operator's rare lockout
                    await self._run(cost, hits, deadline)
        except asyncio.CancelledError:  # the loop is closing: no hit is left waiting for an answer
            self._give_up(pending, None)
            raise
        except Exception as exc:
            # The hits still to send would wait for calls bound to meet the same failure: they get it
            # now, with the failed call's own, so none waits longer than the timeout.
            self._give_up(pending, exc)
        finally:
            # Before the task is done, not in a done callback: a hit that asks in between would find a
            # sender that sends nothing more.
            self._sender = None

    def _sender_finished(self, sender: asyncio.Task) -> None:
        if self._sender is sender:  # cancelled before its first step: neither its body nor `finally` ran
            self._sender = None
            self._give_up({}, None)  # no hit is left waiting for a sender that never sends

    async def _run(self, cost: int, hits: list[tuple[list[str], asyncio.Future]], deadline: float) -> None:
        """Make one call for the hits, by `deadline` (loop time), and hand each its answers."""
        # The script counts the pairs of KEYS in order, so two requests of one client in the same call
        # are counted one after the other, as two calls would.
        keys = [key for redis_keys, _ in hits for key in redis_keys]
        # The one bound of the requests waiting for it (they wait for this call, not a timer each): on a
        # Redis that does not answer in time, each goes on unlimited.
        async with asyncio.timeout_at(deadline):
            answers = await self._script(keys=keys, args=[self._limit, self._expiry, cost])
        start = 0
        for redis_keys, answer in hits:
            end = start + len(redis_keys) // 2
            if not answer.done():  # its request gave up waiting
                answer.set_result(answers[start:end])
            start = end

    def _give_up(
        self, pending: dict[int, list[tuple[list[str], asyncio.Future]]], failure: Exception | None
    ) -> None:
        """Fail every hit not answered yet, of this round (`pending`) and of the next: with `failure`, or
        cancelled where there is none."""
        waiting, self._pending = [*pending.values(), *self._pending.values()], {}
        for _, answer in (hit for hits in waiting for hit in hits):
            if not answer.done():
                if failure is None:
                    answer.cancel()
                else:
                    answer.set_exception(failure)

    def close(self) -> None:
        # Closing the sockets is all a client of a loop that is gone can have: no round trip on a dead
        # loop to say goodbye.
        with contextlib.suppress(RuntimeError):  # its loop may be closed already
            self._client.connection_pool.disconnect()


class RateLimits:
    """One limit (e.g. "120/minute"), counted separately for each (kind, identity)."""

    def __init__(
        self, limit: str, *, redis_url: str | None = None, key_prefix: str = "autional-sessions"
    ) -> None:
        self._item = parse_limit(limit)
        self._key_prefix = key_prefix
        self._redis_url = redis_url or None
        if self._redis_url:
            _check_redis_url(self._redis_url)  # refuses a malformed URL now, not at the first request
        self._storage_name = redact(redis_url) if redis_url else "memory"
        # In memory the counts are plain process state, shared by every event loop. In Redis there is one
        # client per running loop, made when a check first runs on it: a server has one loop per worker;
        # a test may start a loop per test, and gets a client each time.
        self._counter: _MemoryCounter | _RedisCounter | None = (
            _MemoryCounter(self._item) if self._redis_url is None else None
        )
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
        return (await self._hit([(kind, identity)], cost))[0]

    def count_now(self, keys: Sequence[tuple[str, str]]) -> tuple[int, Decision | None] | None:
        """`choose(await check_many(keys))` without waiting, where the counts are in this process's memory;
        None where they are in Redis (then `check_many`)."""
        counter = self._counter  # a memory counter exactly where no Redis is configured
        return counter.count(keys, 1) if isinstance(counter, _MemoryCounter) else None

    def check_many(self, keys: Sequence[tuple[str, str]]) -> Awaitable[list[Decision | None]]:
        """`check` for each (kind, identity) key of one request, in one call (in Redis, one round trip)."""
        return self._hit(keys, 1)  # its awaitable handed back: no coroutine of this method's own

    async def _hit(self, keys: Sequence[tuple[str, str]], cost: int) -> list[Decision | None]:
        counter = self._counter  # a memory counter exactly where no Redis is configured
        if isinstance(counter, _MemoryCounter):  # nothing to wait for, nothing that fails
            return counter.hit(keys, cost)
        if time.monotonic() < self._resume_at:
            return [None] * len(keys)
        counter = self._limiter_for_running_loop()
        try:
            # Bounded by the deadline of the script call it joins (`_RedisCounter._send`), not by a timer
            # of its own.
            return counter.decisions(await counter.ask(keys, cost))
        except _UNAVAILABLE as exc:
            self._storage_failed(exc)
            return [None] * len(keys)

    async def close(self) -> None:
        if self._redis_url is not None and self._counter is not None:
            self._counter.close()
            self._counter = None

    def _limiter_for_running_loop(self) -> _RedisCounter:
        loop = asyncio.get_running_loop()
        if not isinstance(self._counter, _RedisCounter) or self._counter.loop is not loop:
            if self._counter is not None:
                self._counter.close()
            self._counter = _RedisCounter(self._redis_url, self._key_prefix, self._item, loop)
        return self._counter

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
                type(exc).__name__,
            )


def _check_redis_url(redis_url: str) -> None:
    parts = urlsplit(redis_url)
    try:
        valid = parts.scheme in ("redis", "rediss") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number, or out of range
        valid = False
    if not valid:
        raise ValueError(
            f"Redis URL {redact(redis_url)!r} must be redis://HOST:PORT/DB or rediss://HOST:PORT/DB"
        )
