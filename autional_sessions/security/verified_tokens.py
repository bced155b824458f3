"""Tokens whose signature and claims this worker has verified, so that a client's next request with the
same token skips the signature and the claim parsing, and only the checks that depend on the time run.

A client sends the same access token with every request for its whole lifetime (minutes to hours):
verifying its signature and parsing its claims again each time was the largest single cost of a request
(PyJWT: 16 % of the event loop's samples). Only a token that passed every check is kept, under its exact
text (a token that differs by one byte is another key, verified in full), with its claims, the key that
verified it, and the window of time it is valid in (its `nbf`/`iat` and `exp`, widened by the leeway, as
PyJWT compares them). Envoy's JWT filter keeps such a cache (`jwt_cache_config`) for the same reason.

What is checked on every request still: that the token is in its time window now (a cached token expires
exactly when PyJWT would refuse it), that its key is still the one its `alg` and `kid` resolve to (a key
withdrawn from the identity provider's JWKS is never used from here), and, by the verifier, that the
session its `sid` names is still active (revocation). The claims are handed out as a copy (a deep one
when a claim holds a list or an object), so no caller can change what the next request sees. The cache is bounded: when full, its oldest token makes room.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    claims: dict[str, Any]
    algorithm: str
    kid: Any
    key: Any
    # Seconds since the epoch: the token is valid from `valid_from` (inclusive) until `valid_until`.
    valid_from: float
    valid_until: float
    # Whether a claim holds a list or an object (an `aud` list, roles): then a copy must go deep.
    nested: bool

    def claims_copy(self) -> dict[str, Any]:
        """The claims, for one request to read or change without touching the kept ones."""
        return copy.deepcopy(self.claims) if self.nested else dict(self.claims)


class VerifiedTokens:
    """At most `size` verified tokens, by their exact text; a size of 0 keeps none."""

    def __init__(self, size: int, leeway: int) -> None:
        self._size = size
        self._leeway = leeway
        self._tokens: dict[str, VerifiedToken] = {}

    def get(self, token: str, now: float) -> VerifiedToken | None:
        """The token's entry if it is valid at `now`; an entry past its window is dropped."""
        found = self._tokens.get(token)
        if found is None:
            return None
        if not found.valid_from <= now < found.valid_until:
            # Verified in full again, which answers the right problem (expired, not yet valid).
            self._tokens.pop(token, None)
            return None
        return found

    def add(self, token: str, claims: dict[str, Any], algorithm: str, kid: Any, key: Any) -> None:
        """Keep a token that passed every check, its claims as PyJWT returned them (time claims integers
        or numbers: PyJWT refused any other)."""
        if self._size <= 0:
            return
        # PyJWT: expired once exp <= now - leeway; not valid yet while nbf or iat > now + leeway.
        valid_until = int(claims["exp"]) + self._leeway
        starts = [int(claims[name]) for name in ("nbf", "iat") if name in claims]
        valid_from = max(starts) - self._leeway if starts else float("-inf")
        while len(self._tokens) >= self._size:
            # The oldest first (dicts keep insertion order): a bound, not a ranking by use.
            self._tokens.pop(next(iter(self._tokens)))
        nested = any(isinstance(value, list | dict) for value in claims.values())
        self._tokens[token] = VerifiedToken(
            copy.deepcopy(claims), algorithm, kid, key, valid_from, valid_until, nested
        )

    def forget(self, token: str) -> None:
        self._tokens.pop(token, None)

    def __len__(self) -> int:
        return len(self._tokens)
