"""Rate limits per client address and per token subject, applied to requests: the two middlewares over the
limiter (`security.rate_limiter`), which turn its refusal into a 429 problem and mark an allowed
response with the caller's budget.

Headers follow draft-ietf-httpapi-ratelimit-headers in its three-header form (`RateLimit-Limit`,
`RateLimit-Remaining`, `RateLimit-Reset`), as the contract documents them.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from autional_sessions.http.client_address import ClientAddress
from autional_sessions.problems.factory import ProblemError
from autional_sessions.problems.languages import N_
from autional_sessions.security.rate_limiter import Decision, RateLimits


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
