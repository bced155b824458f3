"""The keys tokens are verified with, each bound to the algorithms it may serve (RFC 8725 §3.1).

- HMAC (HS256/384/512): the configured secret, for HMAC algorithms only.
- A PEM public key file: one key, for the configured public-key algorithms of its type.
- A JWKS URL: the identity provider's published keys, selected by `kid`, fetched without blocking the
  event loop, cached, refetched when a token names a key not seen yet (at most once every
  `MIN_REFETCH_SECONDS`, so a flood of made-up `kid`s cannot turn into a flood of fetches), and kept
  when a fetch fails or returns garbage.

A key is only ever used for an algorithm of its own family: an RSA key for RS*/PS*, an EC key for ES* on
its own curve, an OKP key for EdDSA. So `none`, HS/RS confusion (a public key used as an HMAC secret)
and an algorithm outside the configured list are refused whatever the token's header says. Headers that
point elsewhere for a key (`jku`, `x5u`, `jwk`, `x5c`) are never read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from autional_sessions.config import ASYMMETRIC_ALGORITHMS, ConfigError, Settings

# Named for what it logs, as operators filter on it, not after the module.
logger = logging.getLogger("autional_sessions.token_keys")

# A flood of unknown `kid`s makes at most this many fetches a minute: 60 / 15.
MIN_REFETCH_SECONDS = 15
FETCH_TIMEOUT_SECONDS = 3
_MAX_JWKS_BYTES = 512 * 1024

# The key family (and, for EC, the curve) each algorithm needs.
_FAMILY = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "ES256": ("EC", "secp256r1"),
    "ES384": ("EC", "secp384r1"),
    "EdDSA": ("OKP", None),
}


@dataclass(frozen=True)
class _PublishedKey:
    key: Any  # a cryptography public key
    algorithm: str | None  # the JWK's `alg`, when it names one
    use: str  # the JWK's `use`: only "sig" keys verify tokens


class UnknownKey(Exception):
    """No key this server trusts can verify a token with this algorithm and `kid`."""


class KeysUnavailable(Exception):
    """The identity provider's keys could not be fetched yet: no token can be verified (a 503)."""


def _family_of(key: Any) -> tuple[str, str | None]:
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.name
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "OKP", None
    return type(key).__name__, None


def suits(key: Any, algorithm: str) -> bool:
    """Whether `key` (a cryptography public key) may verify `algorithm`."""
    return _FAMILY.get(algorithm) == _family_of(key)


class PemKey:
    """One public key from a PEM file, read at start-up."""

    def __init__(self, path: str, algorithms: tuple[str, ...]) -> None:
        try:
            key = load_pem_public_key(Path(path).read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"AUTIONAL_JWT_PUBLIC_KEY_FILE {path!r} is not a readable PEM public key ({type(exc).__name__})"
            ) from None
        self._algorithms = frozenset(a for a in algorithms if suits(key, a))
        if not self._algorithms:
            family = _family_of(key)[0]
            raise ConfigError(
                f"AUTIONAL_JWT_PUBLIC_KEY_FILE holds a {family} key, which none of AUTIONAL_JWT_ALGORITHMS "
                f"({', '.join(a for a in algorithms if a in ASYMMETRIC_ALGORITHMS)}) can use"
            )
        self._key = key

    async def key_for(self, algorithm: str, kid: str | None) -> Any:
        if algorithm not in self._algorithms:
            raise UnknownKey
        return self._key


class JwksKeys:
    """An identity provider's published keys, by `kid`."""

    def __init__(
        self, url: str, refresh_seconds: int, *, min_refetch_seconds: float = MIN_REFETCH_SECONDS
    ) -> None:
        self._url = url
        self._refresh_seconds = refresh_seconds
        self._min_refetch_seconds = min_refetch_seconds
        self._keys: dict[str | None, _PublishedKey] = {}
        self._fetched_at = float("-inf")  # when the keys in hand were fetched
        self._attempted_at = float("-inf")  # when a fetch last started, whatever came of it
        self._inflight: asyncio.Task | None = None

    async def key_for(self, algorithm: str, kid: str | None) -> Any:
        if time.monotonic() - self._fetched_at > self._refresh_seconds:
            # Stale or never fetched: the first token waits for the keys; later ones are served with
            # the keys in hand while the fetch (a task this object holds) runs.
            fetch = self._start_fetch()
            if fetch is not None and not self._keys:
                await asyncio.shield(fetch)
        jwk = self._select(algorithm, kid)
        if jwk is None:
            # A key published after the last fetch: fetch again, if not too soon after the last try.
            await self._refresh()
            jwk = self._select(algorithm, kid)
        if jwk is None:
            if not self._keys:
                raise KeysUnavailable
            raise UnknownKey
        return jwk.key

    def _select(self, algorithm: str, kid: str | None) -> _PublishedKey | None:
        if kid is None:
            # Without a kid, only a set of one key of the right kind is unambiguous.
            candidates = [k for k in self._keys.values() if self._usable(k, algorithm)]
            return candidates[0] if len(candidates) == 1 else None
        jwk = self._keys.get(kid)
        return jwk if jwk is not None and self._usable(jwk, algorithm) else None

    @staticmethod
    def _usable(published: _PublishedKey, algorithm: str) -> bool:
        return (
            published.use == "sig"
            and published.algorithm in (None, algorithm)
            and suits(published.key, algorithm)
        )

    async def _refresh(self) -> None:
        fetch = self._start_fetch()
        if fetch is not None:
            # Shielded: a request that gives up waiting must not cancel the fetch others wait for.
            await asyncio.shield(fetch)

    def _start_fetch(self) -> asyncio.Task | None:
        """The fetch under way on this loop, or a new one unless the last began too recently."""
        task = self._inflight
        loop = asyncio.get_running_loop()
        if task is not None and not task.done() and task.get_loop() is loop:
            return task
        if time.monotonic() - self._attempted_at < self._min_refetch_seconds:
            return None
        self._attempted_at = time.monotonic()
        self._inflight = loop.create_task(self._fetch())
        return self._inflight

    async def _fetch(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False) as client:
                response = await client.get(self._url, headers={"Accept": "application/json"})
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
            if len(response.content) > _MAX_JWKS_BYTES:
                raise ValueError("larger than a key set should be")
            keys = self._parse(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning(
                "JWKS fetch from %s failed (%s); keeping the %d keys in hand", self._url, exc, len(self._keys)
            )
            return
        self._keys = keys
        self._fetched_at = time.monotonic()
        logger.info("JWKS fetched from %s: %d signing keys", self._url, len(keys))

    @staticmethod
    def _parse(document: Any) -> dict[str | None, _PublishedKey]:
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("not a JWK set")
        keys: dict[str | None, _PublishedKey] = {}
        for entry in document["keys"]:
            if not isinstance(entry, dict) or entry.get("kty") == "oct":
                continue  # a shared secret never comes from a published key set
            try:
                jwk = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue  # a key type or algorithm this server does not support
            algorithm = entry.get("alg")
            keys[jwk.key_id] = _PublishedKey(
                key=jwk.key,
                algorithm=algorithm if isinstance(algorithm, str) else None,
                use=str(entry.get("use", "sig")),
            )
        if not keys:
            raise ValueError("no usable signing key")
        return keys


def public_keys(settings: Settings) -> PemKey | JwksKeys | None:
    """The configured source of public keys, or None when only HMAC algorithms are accepted."""
    if settings.jwt_public_key_file:
        return PemKey(settings.jwt_public_key_file, settings.jwt_algorithms)
    if settings.jwt_jwks_url:
        return JwksKeys(settings.jwt_jwks_url, settings.jwks_refresh_seconds)
    return None
