"""Bearer-token authentication with PyJWT (RFC 7519), wired into Connexion's security middleware.

The accepted algorithms come from configuration, never from the token's header (RFC 8725 §3.1), and
every rejection says why in an RFC 6750 `WWW-Authenticate` challenge.
"""

from __future__ import annotations

from typing import Any

import jwt
from connexion.security import BearerSecurityHandler

from autional_sessions.config import Settings
from autional_sessions.problems import ProblemError

REALM = "autional-sessions"
MISSING_CHALLENGE = f'Bearer realm="{REALM}"'


def invalid_token(type_name: str, description: str) -> ProblemError:
    # The description goes into a quoted header parameter: keep it to fixed, quote-free texts.
    challenge = f'Bearer realm="{REALM}", error="invalid_token", error_description="{description}"'
    return ProblemError(type_name, description, headers={"WWW-Authenticate": challenge})


def missing_token(detail: str) -> ProblemError:
    return ProblemError("missing-credentials", detail, headers={"WWW-Authenticate": MISSING_CHALLENGE})


class TokenVerifier:
    """Checks a bearer token and returns its claims; everything it needs is fixed at start-up."""

    def __init__(self, settings: Settings) -> None:
        settings.check_signing_key()
        required = ["exp", "sub"]
        if settings.jwt_issuer:
            required.append("iss")
        if settings.jwt_audience:
            required.append("aud")
        self._decode_kwargs: dict[str, Any] = {
            "key": settings.jwt_secret,
            "algorithms": list(settings.jwt_algorithms),
            "issuer": settings.jwt_issuer,
            "audience": settings.jwt_audience,
            "leeway": settings.jwt_leeway,
            "options": {"require": required},
        }
        self._jwt = jwt.PyJWT()

    def verify(self, token: str) -> dict[str, Any]:
        try:
            claims = self._jwt.decode(token, **self._decode_kwargs)
        except jwt.ExpiredSignatureError:
            raise invalid_token("token-expired", "The token has expired") from None
        except jwt.ImmatureSignatureError:
            raise invalid_token("invalid-token", "The token is not valid yet") from None
        except jwt.MissingRequiredClaimError as exc:
            raise invalid_token("invalid-token", f"The token lacks the required {exc.claim} claim") from None
        except jwt.InvalidIssuerError:
            raise invalid_token("invalid-token", "The token was issued by another issuer") from None
        except jwt.InvalidAudienceError:
            raise invalid_token("invalid-token", "The token is meant for another audience") from None
        except jwt.InvalidAlgorithmError:
            raise invalid_token(
                "invalid-token", "The token is signed with an algorithm this server does not accept"
            ) from None
        except jwt.InvalidSignatureError:
            raise invalid_token("invalid-token", "The token signature does not verify") from None
        except jwt.InvalidTokenError:
            raise invalid_token("invalid-token", "The token is malformed") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise invalid_token("invalid-token", "The token subject is not a user ID")
        return claims

    def issue(self, subject: str, ttl_seconds: int, now: int) -> str:
        """A token this verifier accepts, for the `token` command and tests."""
        claims: dict[str, Any] = {"sub": subject, "iat": now, "nbf": now, "exp": now + ttl_seconds}
        if self._decode_kwargs["issuer"]:
            claims["iss"] = self._decode_kwargs["issuer"]
        if self._decode_kwargs["audience"]:
            claims["aud"] = self._decode_kwargs["audience"]
        return jwt.encode(claims, self._decode_kwargs["key"], algorithm=self._decode_kwargs["algorithms"][0])


def bearer_security_handler(verifier: TokenVerifier) -> type[BearerSecurityHandler]:
    """A Connexion security handler class bound to this app's verifier (no module-level state)."""

    class _BoundBearerHandler(BearerSecurityHandler):
        def _resolve_func(self, security_scheme: dict) -> Any:
            return verifier.verify

        def _get_verify_func(self, token_info_func: Any) -> Any:
            def verify(request: Any) -> Any:
                authorization = request.headers.get("Authorization")
                if not authorization:
                    raise missing_token("The request carries no bearer token")
                scheme, _, token = authorization.strip().partition(" ")
                if scheme.lower() != "bearer":
                    raise missing_token("The Authorization header does not carry a bearer token")
                token = token.strip()
                if not token:
                    raise invalid_token("invalid-token", "The bearer token is empty")
                return token_info_func(token)

            return verify

    return _BoundBearerHandler
