"""Bearer-token authentication with PyJWT (RFC 7519, RFC 8725), wired into Connexion's security middleware.

The accepted algorithms come from configuration, never from the token's header (RFC 8725 §3.1); each is
verified only with a key of its own family (`token_keys`). Before a signature is checked, a token must
be of a bounded size, declare a JWT type if it declares one (RFC 8725 §3.11, RFC 9068), and ask for no
header extension this server does not understand (`crit`, RFC 7515 §4.1.11). Every refusal is a 401
problem with an RFC 6750 `WWW-Authenticate` challenge whose description helps an honest client (which
claim, which rule) without telling an attacker which key or secret came close.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
from connexion.security import BearerSecurityHandler

from autional_sessions.config import MIN_HS_SECRET_BYTES, ConfigError, Settings
from autional_sessions.problems.factory import ProblemError
from autional_sessions.problems.languages import N_, Args, Text
from autional_sessions.security.token_keys import KeysUnavailable, UnknownKey, public_keys
from autional_sessions.security.verified_tokens import VerifiedTokens

REALM = "autional-sessions"
MISSING_CHALLENGE = f'Bearer realm="{REALM}"'
NO_TOKEN = N_("missing-credentials", "The request carries no bearer token")
# `typ` values of a JWT access token (RFC 7519 §5.1, RFC 9068 §2.1), compared case-insensitively.
_JWT_TYPES = frozenset({"jwt", "at+jwt", "application/jwt", "application/at+jwt"})


def invalid_token(type_name: str, message: Text, args: Args | None = None) -> ProblemError:
    error = ProblemError(type_name, message, args=args)
    # The English detail goes into a quoted header parameter, which RFC 6750 §3 keeps to ASCII: keep the
    # texts and their values (claim names) free of quotes.
    error.headers["WWW-Authenticate"] = (
        f'Bearer realm="{REALM}", error="invalid_token", error_description="{error.detail}"'
    )
    return error


def missing_token(message: Text) -> ProblemError:
    return ProblemError("missing-credentials", message, headers={"WWW-Authenticate": MISSING_CHALLENGE})


# Whether the user's session with this id is still active: asked of a token that names its session.
SessionCheck = Callable[[str, str], Awaitable[bool]]


class TokenVerifier:
    """Checks a bearer token and returns its claims; everything it needs is fixed at start-up.

    With `session_active`, a token that names its session (`sid`, OpenID Connect) is refused once that
    session has ended (revoked, expired): signing a device out makes its token useless here, on every
    operation, not only hides a row of the list.
    """

    def __init__(self, settings: Settings, *, session_active: SessionCheck | None = None) -> None:
        settings.check_signing_key()
        required = ["exp", "sub"]
        if settings.jwt_issuer:
            required.append("iss")
        if settings.jwt_audience:
            required.append("aud")
        self._algorithms = frozenset(settings.jwt_algorithms)
        self._secret = settings.jwt_secret
        self._public_keys = public_keys(settings)
        self._max_bytes = settings.jwt_max_bytes
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._decode_kwargs: dict[str, Any] = {
            "issuer": settings.jwt_issuer,
            "audience": settings.jwt_audience,
            "leeway": settings.jwt_leeway,
            "options": {"require": required},
        }
        self._tenant_claim = settings.tenant_claim
        self._session_active = session_active
        self._first_algorithm = settings.jwt_algorithms[0]
        self._jwt = jwt.PyJWT()
        self._verified = VerifiedTokens(settings.jwt_cache_size, settings.jwt_leeway)

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims (a copy of its own), or a 401 problem; a token this worker verified before
        skips its signature (`verified_tokens`), never its time window, its key or its session."""
        claims: dict[str, Any] | None = None
        known = self._verified.get(token, time.time())
        if known is not None:
            # An HMAC secret is fixed at start-up; a public key must still be the one its kid names.
            if known.algorithm in MIN_HS_SECRET_BYTES or known.key is await self._key_for(
                known.algorithm, known.kid
            ):
                claims = known.claims_copy()
            else:
                self._verified.forget(token)
        if claims is None:
            claims = await self._verify_in_full(token)  # kept as a deep copy: this one is the caller's
        session_id = claims.get("sid")
        if (
            session_id is not None
            and self._session_active is not None
            and not await self._session_active(claims["sub"], session_id)
        ):
            raise invalid_token(
                "session-ended", N_("session-ended", "The session of this token has ended; sign in again")
            )
        return claims

    async def _verify_in_full(self, token: str) -> dict[str, Any]:
        """Every check of the token but its session's; its claims, kept for its next requests."""
        if len(token) > self._max_bytes:
            raise invalid_token(
                "invalid-token", N_("invalid-token", "The token is larger than this server accepts")
            )
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise invalid_token("invalid-token", N_("invalid-token", "The token is malformed")) from None
        algorithm = header.get("alg")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in _JWT_TYPES):
            raise invalid_token(
                "invalid-token", N_("invalid-token", "The token is not a JWT access token (typ)")
            )
        if "crit" in header:
            raise invalid_token(
                "invalid-token",
                N_("invalid-token", "The token requires a header extension this server does not support"),
            )
        if algorithm not in self._algorithms:
            raise invalid_token(
                "invalid-token",
                N_("invalid-token", "The token is signed with an algorithm this server does not accept"),
            )
        key = await self._key_for(algorithm, header.get("kid"))
        try:
            claims = self._jwt.decode(token, key, algorithms=[algorithm], **self._decode_kwargs)
        except jwt.ExpiredSignatureError:
            raise invalid_token("token-expired", N_("token-expired", "The token has expired")) from None
        except jwt.ImmatureSignatureError:
            raise invalid_token("invalid-token", N_("invalid-token", "The token is not valid yet")) from None
        except jwt.MissingRequiredClaimError as exc:
            raise invalid_token(
                "invalid-token",
                N_("invalid-token", "The token lacks the required %(claim)s claim"),
                {"claim": exc.claim},
            ) from None
        except jwt.InvalidIssuerError:
            raise invalid_token(
                "invalid-token", N_("invalid-token", "The token was issued by another issuer")
            ) from None
        except jwt.InvalidAudienceError:
            raise invalid_token(
                "invalid-token", N_("invalid-token", "The token is meant for another audience")
            ) from None
        except jwt.InvalidSignatureError:
            raise invalid_token(
                "invalid-token", N_("invalid-token", "The token signature does not verify")
            ) from None
        except jwt.InvalidTokenError:
            raise invalid_token("invalid-token", N_("invalid-token", "The token is malformed")) from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise invalid_token("invalid-token", N_("invalid-token", "The token subject is not a user ID"))
        tenant = claims.get(self._tenant_claim)
        if tenant is not None and (not isinstance(tenant, str) or not tenant):
            raise invalid_token(
                "invalid-token", N_("invalid-token", "The token tenant claim is not a tenant ID")
            )
        session_id = claims.get("sid")
        if session_id is not None and (not isinstance(session_id, str) or not session_id):
            raise invalid_token(
                "invalid-token", N_("invalid-token", "The token sid claim is not a session ID")
            )
        self._verified.add(token, claims, algorithm, header.get("kid"), key)
        return claims

    async def _key_for(self, algorithm: str, kid: Any) -> Any:
        if algorithm in MIN_HS_SECRET_BYTES:
            return self._secret
        if self._public_keys is None:
            raise invalid_token(
                "invalid-token",
                N_("invalid-token", "The token is signed with an algorithm this server does not accept"),
            )
        try:
            return await self._public_keys.key_for(algorithm, kid if isinstance(kid, str) else None)
        except UnknownKey:
            raise invalid_token(
                "invalid-token",
                N_("invalid-token", "The token is signed with a key this server does not know"),
            ) from None
        except KeysUnavailable:
            raise ProblemError(
                "service-unavailable",
                N_(
                    "service-unavailable",
                    "The identity provider's signing keys cannot be fetched; retry later",
                ),
            ) from None

    def issue(self, subject: str, ttl_seconds: int, now: int, **claims: Any) -> str:
        """A token this verifier accepts, for the `token` command and tests (HMAC only: the server holds
        no private key)."""
        if self._first_algorithm not in MIN_HS_SECRET_BYTES:
            raise ConfigError(
                "only HMAC tokens can be issued here: the first of AUTIONAL_JWT_ALGORITHMS must be HS256, "
                "HS384 or HS512, with AUTIONAL_JWT_SECRET set"
            )
        payload: dict[str, Any] = {"sub": subject, "iat": now, "nbf": now, "exp": now + ttl_seconds}
        if self._issuer:
            payload["iss"] = self._issuer
        if self._audience:
            payload["aud"] = self._audience
        payload.update(claims)
        return jwt.encode(payload, self._secret, algorithm=self._first_algorithm, headers={"typ": "JWT"})


def bearer_security_handler(verifier: TokenVerifier) -> type[BearerSecurityHandler]:
    """A Connexion security handler class bound to this app's verifier (no module-level state)."""

    class _BoundBearerHandler(BearerSecurityHandler):
        # `get_fn` is what Connexion's security handler factory calls for each scheme: the function that
        # takes the request and answers its token's claims, or raises.
        def get_fn(self, security_scheme: dict, required_scopes: Any) -> Any:
            def verify(request: Any) -> Any:
                authorization = request.headers.get("Authorization")
                if not authorization:
                    raise missing_token(NO_TOKEN)
                scheme, _, token = authorization.strip().partition(" ")
                if scheme.lower() != "bearer":
                    raise missing_token(
                        N_("missing-credentials", "The Authorization header does not carry a bearer token")
                    )
                token = token.strip()
                if not token:
                    raise invalid_token("invalid-token", N_("invalid-token", "The bearer token is empty"))
                # A coroutine: Connexion's security middleware awaits it.
                return verifier.verify(token)

            return verify

    return _BoundBearerHandler
