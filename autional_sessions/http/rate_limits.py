"""The rate limits applied to requests: per client address and per token subject, both counted in one call
to the limiter (one round trip to Redis) once the token is checked.

`ClientRateLimitMiddleware` goes before Connexion's routing and `SubjectRateLimitMiddleware` right after
its security middleware, which puts the verified subject in the request's context; both inside the
exception middleware, which renders their 429. The outer one opens the request's budget; the inner one
counts the address and the subject together and refuses the request before validation and the handler
run. A request that never reaches the inner one (its token refused, its path unknown) is counted against
its address by the outer one, which turns its error into a 429 once the address is over its limit: a
flood of forged tokens is limited too. Every response of the request, an error's too, carries the budget
that runs out first: counting puts its headers in the request's context, and the request context
middleware (outermost) writes them with its own stamps, on whatever answers, in its one pass over the
response's headers; no layer here wraps `send`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

from starlette.types import ASGIApp, Receive, Scope, Send

from autional_sessions.http.client_address import ClientAddress
from autional_sessions.observability.request_context import active_request
from autional_sessions.problems.factory import ProblemError
from autional_sessions.problems.languages import N_
from autional_sessions.security.rate_limiter import Decision, RateLimits

_REFUSALS = {
    "ip": N_("rate-limited", "Too many requests from this client address; retry in %(retry_after)d seconds"),
    "sub": N_("rate-limited", "Too many requests for this user; retry in %(retry_after)d seconds"),
}
OnRefusal = Callable[[str], None]


class _Budget:
    """One request's rate limits: its address, and the decisions once counted."""

    __slots__ = ("address", "counted", "decisions", "limits", "on_refusal")

    def __init__(self, limits: RateLimits, address: str | None, on_refusal: OnRefusal) -> None:
        self.limits = limits
        self.address = address
        self.on_refusal = {"ip": on_refusal}
        self.counted = False
        self.decisions: list[tuple[str, Decision]] = []

    async def count(self, subject: str | None, limits: RateLimits, on_refusal: OnRefusal) -> None:
        """Count the request against its address and, with `subject`, its subject; a ProblemError (429)
        when either is over its limit."""
        self.counted = True
        self.on_refusal["sub"] = on_refusal
        keys = [("ip", self.address)] if self.address is not None else []
        if subject:
            keys.append(("sub", subject))
        if limits is self.limits:
            # In memory the answer is at hand: no coroutine to make and await for it.
            found = limits.check_many_now(keys)
            if found is None:
                found = await limits.check_many(keys)
        else:  # limits of their own for subjects: one call each
            found = [await (self.limits if kind == "ip" else limits).check(kind, who) for kind, who in keys]
        # A key whose storage is unavailable goes unlimited, and without headers.
        self.decisions = [(key[0], d) for key, d in zip(keys, found, strict=True) if d is not None]
        tightest = self.tightest()
        context = active_request()
        if tightest is not None and context is not None:
            # Written on the response, whatever answers the request (the handler, a problem), by the
            # request context middleware, with its own stamps.
            context.response_headers[:] = tightest.raw_headers()
        for kind, decision in self.decisions:
            if not decision.allowed:
                self.on_refusal[kind](kind)
                raise ProblemError(
                    "rate-limited",
                    _REFUSALS[kind],
                    args={"retry_after": decision.retry_after},
                    retry_after=decision.retry_after,
                    headers=decision.headers(),
                )

    def tightest(self) -> Decision | None:
        """The budget that runs out first (the subject's, of two that run out together)."""
        tightest: Decision | None = None
        for _kind, decision in self.decisions:
            if tightest is None or decision.remaining <= tightest.remaining:
                tightest = decision
        return tightest

    def headers(self) -> dict[str, str]:
        tightest = self.tightest()
        return tightest.headers() if tightest else {}


_budget: ContextVar[_Budget | None] = ContextVar("autional_rate_limit_budget", default=None)


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
        budget = _Budget(self.limits, self.client_address.of(scope), self.on_refusal)
        token = _budget.set(budget)
        try:
            await self.app(scope, receive, send)
        except Exception:
            if not budget.counted:
                # Refused before its subject was counted (its token, its path): counted against its
                # address all the same, and past the address's limit a 429 in its place.
                await budget.count(None, self.limits, self.on_refusal)
            raise
        else:
            if not budget.counted:  # an answer that came without the subject's middleware
                await budget.count(None, self.limits, self.on_refusal)
        finally:
            _budget.reset(token)


class SubjectRateLimitMiddleware:
    """Counts the request against its address and its token's subject (if it has one), in one call; goes
    after Connexion's security middleware, which puts the verified subject in the request's context."""

    def __init__(
        self, app: ASGIApp, *, limits: RateLimits, on_refusal: OnRefusal = lambda _kind: None
    ) -> None:
        self.app = app
        self.limits = limits
        self.on_refusal = on_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            context = (scope.get("extensions") or {}).get("connexion_context") or {}
            subject = context.get("user")
            subject = subject if isinstance(subject, str) and subject else None
            budget = _budget.get()
            if budget is None:  # no address middleware outside: the subject alone, without headers
                budget = _Budget(self.limits, None, self.on_refusal)
            await budget.count(subject, self.limits, self.on_refusal)
        await self.app(scope, receive, send)
