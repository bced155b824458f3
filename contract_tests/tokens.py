"""Tokens the checks send: forged from a given token without any key, or minted with the signing key.

Forging follows jwt_tool's playbook and RFC 8725's list of attacks (alg none, stripped and altered
signatures, a payload changed under its signature, kid injection, an embedded jwk, HMAC keyed with the
public key). HMAC signatures are computed here, not by PyJWT, which rightly refuses to sign with an empty
secret or a PEM key: the attacks need exactly those.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from pathlib import Path
from typing import Any

_HMAC = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
# Every casing of "none" (RFC 8725 section 3.1: a library that compares case-sensitively is fooled).
NONE_CASINGS = tuple(
    "".join(c.upper() if (mask >> i) & 1 else c for i, c in enumerate("none")) for mask in range(16)
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def split(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A JWS compact token's header, payload (unverified) and signature segment."""
    header, payload, signature = token.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(payload)), signature


def assemble(header: dict[str, Any], payload: dict[str, Any], signature: str = "") -> str:
    return f"{encode_json(header)}.{encode_json(payload)}.{signature}"


def hmac_token(header: dict[str, Any], payload: dict[str, Any], key: bytes) -> str:
    signing_input = f"{encode_json(header)}.{encode_json(payload)}"
    digest = _HMAC[header["alg"]]
    return f"{signing_input}.{b64url(hmac.new(key, signing_input.encode(), digest).digest())}"


def flip_signature(signature: str, index: int) -> str:
    """The signature with one byte changed: decoded, altered, encoded again. Changing a character of the
    text instead can touch only padding bits, which decoders ignore: the same signature."""
    raw = bytearray(b64url_decode(signature))
    raw[index] ^= 0x01
    return b64url(bytes(raw))


def load_key(path: str | os.PathLike[str]) -> bytes:
    """A signing key file: a PEM private key as is, an HMAC secret without the trailing newline an editor
    or `echo` leaves (as `$(cat file)` would pass it to the server)."""
    data = Path(path).read_bytes()
    return data if data.lstrip().startswith(b"-----BEGIN") else data.strip()


def default_algorithm(key: bytes) -> str:
    """RS256, ES256/384/512 or EdDSA for a PEM private key of that kind, HS256 for a secret."""
    if not key.lstrip().startswith(b"-----BEGIN"):
        return "HS256"
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    private = load_pem_private_key(key, password=None)
    if isinstance(private, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(private, ec.EllipticCurvePrivateKey):
        return {256: "ES256", 384: "ES384", 521: "ES512"}[private.curve.key_size]
    if isinstance(private, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return "EdDSA"
    raise ValueError("the signing key is a PEM private key of a kind JWT does not use")


def is_hmac(algorithm: str) -> bool:
    return algorithm in _HMAC


def public_pem(private_pem: bytes) -> bytes:
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_private_key,
    )

    return (
        load_pem_private_key(private_pem, password=None)
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )


def new_private_key(algorithm: str) -> Any:
    """A fresh private key of the algorithm's family: one the deployment has never seen."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if algorithm.startswith(("RS", "PS")):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}[algorithm]
    return ec.generate_private_key(curve)


def sign(header: dict[str, Any], payload: dict[str, Any], key: Any) -> str:
    """A token signed with `key` for the header's `alg`: bytes for HMAC (any bytes), a private key object
    or PEM for the others."""
    if is_hmac(header["alg"]):
        return hmac_token(header, payload, key)
    import jwt

    extra = {k: v for k, v in header.items() if k != "alg"}
    return jwt.encode(payload, key, algorithm=header["alg"], headers=extra or None)


class Minter:
    """Mints tokens the deployment should accept (and, by overriding one claim, ones it should not)."""

    def __init__(self, key: bytes, algorithm: str, issuer: str | None, audience: str | None) -> None:
        self.key = key
        self.algorithm = algorithm
        self.issuer = issuer
        self.audience = audience

    def claims(self, subject: str, **overrides: Any) -> dict[str, Any]:
        """Valid claims for `subject`; an override of None drops that claim."""
        now = int(time.time())
        # iat a little in the past: a server whose clock lags the runner's must not see a future token.
        payload: dict[str, Any] = {"sub": subject, "iat": now - 30, "exp": now + 900}
        if self.issuer:
            payload["iss"] = self.issuer
        if self.audience:
            payload["aud"] = self.audience
        payload.update(overrides)
        return {k: v for k, v in payload.items() if v is not None}

    def header(self, **extra: Any) -> dict[str, Any]:
        return {"alg": self.algorithm, "typ": "JWT", **extra}

    def mint(self, subject: str, *, header: dict[str, Any] | None = None, **claims: Any) -> str:
        return sign(header or self.header(), self.claims(subject, **claims), self.key)
