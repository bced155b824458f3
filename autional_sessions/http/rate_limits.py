"""The rate limits applied to requests: per client address and per token subject, both counted in one call
to the limiter (one round trip to Redis) once the token is checked.

`ClientRateLimitMiddleware` goes before Connexion's routing and `SubjectRateLimitMiddleware` right after
its security middleware, which puts the verified subject in the request's context; both inside the
exception middleware, which renders their 429. The outer one opens the request's budget; the inner one
counts the address and the subject together and refuses the request before validation and the handler
run. A request that never reaches the inner one (its token refused, its path unknown) is counted against
its address by the outer one, which turns its error into a 429 once the address is over its limit: a
flood of forged tokens is limited too. Every response of the request, an error's too, carries the budget
that runs out first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from autional_sessions.http.client_address import ClientAddress
from autional_sessions.problems.factory import ProblemError
from autional_sessions.problems.languages import N_
from autional_sessions.security.rate_limiter import Decision, RateLimits, choose

_REFUSALS = {
    "ip": N_("rate-limited", "Too many requests from this client address; retry in %(retry_after)d seconds"),
    "sub": N_("rate-limited", "Too many requests for this user; retry in %(retry_after)d seconds"),
}
OnRefusal = Callable[[str], None]


class _Budget:
    """One request's rate limits: its address, and once counted, the decision its responses carry."""

    __slots__ = ("address", "counted", "limits", "on_refusal", "tightest")

    def __init__(self, limits: RateLimits, address: str | None, on_refusal: OnRefusal) -> None:
        self.limits = limits
        self.address = address
        self.on_refusal = on_refusal  # for the address
        self.counted = False
        self.tightest: Decision | None = None

    def count_now(self, subject: str | None, limits: RateLimits, on_refusal: OnRefusal) -> bool:
        """`count`, where the answer is at hand (counts in this process's memory): no coroutine made and
        awaited for it. False, and nothing counted, where it is not (then `count`)."""
        if limits is not self.limits:
            return False
        keys = self._keys(subject)
        found = limits.count_now(keys)
        if found is None:
            return False
        self._settle(keys, *found, on_refusal)
        return True

    async def count(self, subject: str | None, limits: RateLimits, on_refusal: OnRefusal) -> None:
        """Count the request against its address and, with `subject`, its subject (`on_refusal` is the
        subject's); a ProblemError (429) when either is over its limit. At once where the counts are in
        memory, awaited where they are not."""
        if not self.count_now(subject, limits, on_refusal):
            await self._count_waiting(subject, limits, on_refusal)

    async def _count_waiting(self, subject: str | None, limits: RateLimits, on_refusal: OnRefusal) -> None:
        keys = self._keys(subject)
        if limits is self.limits:
            found = await limits.check_many(keys)
        else:  # limits of their own for subjects: one call each
            found = [await (self.limits if kind == "ip" else limits).check(kind, who) for kind, who in keys]
        self._settle(keys, *choose(found), on_refusal)

    def _keys(self, subject: str | None) -> tuple[tuple[str, str], ...]:
        self.counted = True
        address = self.address
        if subject:
            return (("ip", address), ("sub", subject)) if address is not None else (("sub", subject),)
        return (("ip", address),) if address is not None else ()

    def _settle(
        self,
        keys: tuple[tuple[str, str], ...],
        refused: int,
        decision: Decision | None,
        on_refusal: OnRefusal,
    ) -> None:
        # `decision` is the one the responses carry (`choose`): the tightest budget, or the one of the key
        # at `refused` that refuses the request; None where the storage is unavailable (no headers).
        self.tightest = decision
        if refused >= 0:
            assert decision is not None
            kind = keys[refused][0]
            (self.on_refusal if kind == "ip" else on_refusal)(kind)
            raise ProblemError(
                "rate-limited",
                _REFUSALS[kind],
                args={"retry_after": decision.retry_after},
                retry_after=decision.retry_after,
                headers=decision.headers(),
            )

    def headers(self) -> dict[str, str]:
        return self.tightest.headers() if self.tightest else {}

    def stamp(self, message: Message) -> None:
        """Put the budget's headers on a response's start message, in place of any an inner layer set
        (a 429's own): one pass over the raw headers."""
        tightest = self.tightest
        if tightest is None:
            return
        ours = tightest.raw_headers()
        headers = message.get("headers", ())
        if message["status"] < 400 and isinstance(headers, list):
            # A handler's answer: none of these headers yet (only a 429 or an error carries some).
            headers.extend(ours)
            return
        names = {name for name, _ in ours}
        message["headers"] = [h for h in headers if h[0].lower() not in names] + ours


# Where a request's budget waits for the subject's middleware: a key of the request's scope, which every
# layer between the two hands on (Connexion's routing a copy of it), and which ends with the request.
_BUDGET = "autional_sessions.rate_limit_budget"


class ClientRateLimitMiddleware:
    """Opens each request's budget, and counts the address of those that end before the subject's
    middleware counts them."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limits: RateLimits,
        client_address: ClientAddress,
        exempt_paths: frozenset[str] = frozenset(),
        on_refusal: OnRefusal = lambda _kind: None,
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
        budget = scope[_BUDGET] = _Budget(self.limits, self.client_address.of(scope), self.on_refusal)

        # A plain function that hands back `send`'s own awaitable: no coroutine of its own, on each of a
        # response's messages.
        def send_with_budget(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                if not budget.counted:  # an app that answered without the subject's middleware
                    return self._count_then_send(budget, message, send)
                budget.stamp(message)
            return send(message)

        try:
            await self.app(scope, receive, send_with_budget)
        except Exception as exc:
            if not budget.counted:  # counted now, and a 429 in its place past the limit
                await budget.count(None, self.limits, self.on_refusal)
            _add_headers(exc, budget.headers())
            raise

    async def _count_then_send(self, budget: _Budget, message: Message, send: Send) -> None:
        # Counted before the answer starts: past the limit, the 429 goes in its place.
        await budget.count(None, self.limits, self.on_refusal)
        budget.stamp(message)
        await send(message)


class SubjectRateLimitMiddleware:
    """Counts the request against its address and its token's subject (if it has one), in one call; goes
    after Connexion's security middleware, which puts the verified subject in the request's context."""

    def __init__(
        self, app: ASGIApp, *, limits: RateLimits, on_refusal: OnRefusal = lambda _kind: None
    ) -> None:
        self.app = app
        self.limits = limits
        self.on_refusal = on_refusal

    # A plain function that hands back the next layer's awaitable: no coroutine of this layer's own on a
    # request counted in memory (a 429 is raised from the call, as it would be from the await).
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] == "http":
            context = (scope.get("extensions") or {}).get("connexion_context") or {}
            subject = context.get("user")
            subject = subject if isinstance(subject, str) and subject else None
            budget = scope.get(_BUDGET)
            if budget is None:  # no address middleware outside: the subject alone, without headers
                budget = _Budget(self.limits, None, self.on_refusal)
            if not budget.count_now(subject, self.limits, self.on_refusal):
                return self._count_then_call(budget, subject, scope, receive, send)
        return self.app(scope, receive, send)

    async def _count_then_call(
        self, budget: _Budget, subject: str | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        await budget._count_waiting(subject, self.limits, self.on_refusal)  # `count_now` could not
        await self.app(scope, receive, send)


def _add_headers(exc: Exception, headers: dict[str, str]) -> None:
    """Give an error on its way to the exception middleware the budget's headers, so that its problem
    response carries them like any other response."""
    if not headers:
        return
    if isinstance(exc, ProblemError):
        for name, value in headers.items():
            exc.headers.setdefault(name, value)
    elif isinstance(exc, HTTPException):
        exc.headers = {**headers, **(exc.headers or {})}
