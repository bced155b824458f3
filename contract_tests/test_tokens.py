"""Token checks: each forged or minted token must be refused with a 401 problem and an RFC 6750 challenge.

Every check first proves that the deployment accepts the genuine token (given, or minted with the key), so
that a deployment that refuses everything cannot pass; then it sends each variant of its attack to the
caller's own list and to revokeOtherSessions on a made-up user's path, and the first variant also to
revokeSession with a session id nobody has: a deployment that wrongly accepts a token there revokes
nothing.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from typing import Any

import pytest

from .deployment import NOBODY, Deployment
from .expect import Findings, accepted, refused_token, skip
from .tokens import (
    NONE_CASINGS,
    assemble,
    b64url,
    b64url_decode,
    encode_json,
    flip_signature,
    is_hmac,
    new_private_key,
    public_pem,
    sign,
    split,
)

check = pytest.mark.check
# A session id that no deployment has: a revocation a forged token gets wrongly through touches nothing.
NOBODYS_SESSION = "sess_contract_test_nobody"
# Claims that make a token of about 10 KB once base64url-encoded: over the 8 KiB that is a generous bound
# on a token, well under the 16 KiB of headers HTTP servers take (uvicorn's h11, for one), so that the
# answer comes from the API.
OVERSIZED_BYTES = 7 * 1024
_CLAIM_SKEW = 3600  # how far past exp, or before nbf, a refused token is: beyond any leeway (RFC 7519 allows "a few minutes")


@pytest.fixture(scope="module")
def genuine(deployment: Deployment) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The caller's token, proven accepted, split into header, payload and signature."""
    exchange = deployment.call("listUserSessions", token=deployment.token, user_id=deployment.user)
    findings = Findings()
    findings.extend(accepted(exchange, "the genuine token"), exchange)
    findings.conclude()
    try:
        return split(deployment.token)
    except ValueError:
        pytest.skip(
            "the given token is not a JWS compact JWT (three base64url segments): nothing to forge from"
        )


@pytest.fixture(scope="module")
def minted(deployment: Deployment) -> Any:
    """The signing key's minter, proven: a token it mints is accepted."""
    if deployment.minter is None:
        skip("needs the signing key (--signing-key-file)")
    exchange = deployment.call(
        "listUserSessions", token=deployment.minter.mint(deployment.user), user_id=deployment.user
    )
    findings = Findings()
    findings.extend(
        accepted(exchange, "a token minted with the signing key (check --algorithm, --issuer, --audience)"),
        exchange,
    )
    findings.conclude()
    return deployment.minter


def expect_refused(
    deployment: Deployment,
    variants: Iterable[tuple[str, str | None]],
    *,
    error: str | None = "invalid_token",
    raw: bool = False,
    user: str | None = None,
) -> None:
    """Send each (label, token) variant; each must be refused. `raw`: the value is the whole
    Authorization header (None: none at all), not a bearer token."""
    findings = Findings()
    for n, (label, value) in enumerate(variants):
        auth = {"authorization": value} if raw else {"token": value}
        exchange = deployment.call("listUserSessions", user_id=user or deployment.user, **auth)
        findings.extend(refused_token(exchange, label, error=error), exchange)
        # Revoking the others, on the path of a user that does not exist: a token is judged before its
        # user is, so the answer is the same 401, and a deployment that wrongly takes the token answers
        # 403 or 404 there, with no session revoked.
        exchange = deployment.call("revokeOtherSessions", user_id=NOBODY, **auth)
        findings.extend(refused_token(exchange, f"{label}, on revokeOtherSessions", error=error), exchange)
        if n == 0:
            exchange = deployment.call(
                "revokeSession", user_id=user or deployment.user, session_id=NOBODYS_SESSION, **auth
            )
            findings.extend(refused_token(exchange, f"{label}, on revokeSession", error=error), exchange)
    findings.conclude()


# Without a key: forged from the genuine token -----------------------------------------------------------
@check("token.alg-none")
def test_alg_none_is_refused(deployment: Deployment, genuine) -> None:
    header, payload, signature = genuine
    variants = [
        (f"alg {c!r}, empty signature", assemble({**header, "alg": c}, payload)) for c in NONE_CASINGS
    ]
    variants += [
        (f"alg {c!r}, the original signature", assemble({**header, "alg": c}, payload, signature))
        for c in ("none", "None", "NONE", "nOnE")
    ]
    # A deny-list that compares the exact string lets padded or empty names through to the "no signature" path.
    variants += [
        (f"alg {c!r}, empty signature", assemble({**header, "alg": c}, payload))
        for c in (" none", "none ", "")
    ]
    variants.append(
        (
            "alg 'none', no signature segment",
            f"{encode_json({**header, 'alg': 'none'})}.{encode_json(payload)}",
        )
    )
    expect_refused(deployment, variants)


@check("token.signature-tampered")
def test_tampered_signature_is_refused(deployment: Deployment, genuine) -> None:
    header, payload, signature = genuine
    length = len(_raw(signature))
    variants = [
        ("the signature's first byte changed", assemble(header, payload, flip_signature(signature, 0))),
        ("the signature's last byte changed", assemble(header, payload, flip_signature(signature, -1))),
        ("a byte in the middle changed", assemble(header, payload, flip_signature(signature, length // 2))),
        ("a signature of zero bytes of the same length", assemble(header, payload, b64url(bytes(length)))),
        ("half the signature", assemble(header, payload, b64url(_raw(signature)[: length // 2]))),
        # A comparison over the expected length only ignores what follows it.
        ("the signature with a byte appended", assemble(header, payload, b64url(_raw(signature) + b"\x00"))),
        ("the signature twice", assemble(header, payload, b64url(_raw(signature) * 2))),
    ]
    expect_refused(deployment, variants)


@check("token.signature-stripped")
def test_stripped_signature_is_refused(deployment: Deployment, genuine) -> None:
    header, payload, _signature = genuine
    variants = [
        ("an empty signature", assemble(header, payload)),
        ("no signature segment", f"{encode_json(header)}.{encode_json(payload)}"),
    ]
    expect_refused(deployment, variants)


@check("token.payload-swapped")
def test_swapped_payload_is_refused(deployment: Deployment, genuine) -> None:
    header, payload, signature = genuine
    other = deployment.other_user
    # The other user's token, to the other user's list: a deployment that reads the payload unverified
    # lets the caller in as them.
    expect_refused(
        deployment,
        [
            (
                f"sub changed to {other}, the original signature",
                assemble(header, {**payload, "sub": other}, signature),
            )
        ],
        user=other,
    )
    later = int(payload.get("exp", time.time())) + 365 * 86400
    expect_refused(
        deployment,
        [
            (
                "exp a year later, the original signature",
                assemble(header, {**payload, "exp": later}, signature),
            )
        ],
    )


@check("token.malformed")
def test_malformed_token_is_refused(deployment: Deployment, genuine) -> None:
    header, payload, signature = genuine
    h, p = encode_json(header), encode_json(payload)
    variants = [
        ("a word", "not-a-jwt"),
        ("three segments of garbage", "a.b.c"),
        ("dots only", ".."),
        ("four segments", f"{h}.{p}.{signature}.{signature}"),
        ("five segments (a JWE shape)", f"{h}.{p}.{signature}.{p}.{signature}"),
        ("a header that is not JSON", f"{b64url(b'not json')}.{p}.{signature}"),
        ("a payload that is not JSON", f"{h}.{b64url(b'not json')}.{signature}"),
        ("a header that is a JSON array", f"{b64url(b'[]')}.{p}.{signature}"),
        ("a payload that is a JSON string", f"{h}.{b64url(json.dumps('sub').encode())}.{signature}"),
        ("characters outside base64url", f"{h}!.{p}.{signature}"),
        (
            "a header without alg",
            assemble({k: v for k, v in header.items() if k != "alg"}, payload, signature),
        ),
    ]
    expect_refused(deployment, variants)


@check("token.oversized")
def test_oversized_token_is_refused(deployment: Deployment, genuine) -> None:
    header, payload, signature = genuine
    pad = "x" * OVERSIZED_BYTES
    variants = [
        (
            "about 10 KB of claims, the original signature",
            assemble(header, {**payload, "pad": pad}, signature),
        )
    ]
    if deployment.minter is not None:
        # Signed with the key: refused only if the deployment bounds a token's size.
        variants.append(
            ("about 10 KB of claims, signed with the key", deployment.minter.mint(deployment.user, pad=pad))
        )
    expect_refused(deployment, variants)


@check("token.wrong-scheme")
def test_token_under_another_scheme_is_refused(deployment: Deployment, genuine) -> None:
    token = deployment.token
    variants = [
        ("the token under Basic", f"Basic {token}"),
        ("the token under Token", f"Token {token}"),
        ("the token under JWT", f"JWT {token}"),
        ("the token with no scheme", token),
        ("no Authorization header", None),
        ("Bearer with no token", "Bearer"),
    ]
    # RFC 6750 section 3.1: a request without a bearer token gets a challenge with no error code, or any.
    expect_refused(deployment, variants, raw=True, error=None)
    # The contract's only scheme is the Authorization header: a token in the URL ends up in access logs,
    # proxies and browser history (RFC 6750 section 5.3, RFC 8725). None of these may authenticate: a 401,
    # or a 400 from a deployment that refuses unknown parameters first.
    findings = Findings()
    for name in ("access_token", "token", "jwt"):
        exchange = deployment.call("listUserSessions", user_id=deployment.user, params={name: token})
        if exchange.status not in (400, 401):
            findings.add(
                f"the token as the query parameter {name}, no Authorization: status {exchange.status}, "
                "expected 401",
                exchange,
            )
    findings.conclude()


# With the signing key: minted, wrong in one respect each ------------------------------------------------
@check("token.expired")
def test_expired_token_is_refused(deployment: Deployment, minted) -> None:
    now = int(time.time())
    variants = [
        ("exp an hour ago", minted.mint(deployment.user, iat=now - 2 * _CLAIM_SKEW, exp=now - _CLAIM_SKEW)),
        ("exp a day ago", minted.mint(deployment.user, iat=now - 2 * 86400, exp=now - 86400)),
        # exp must be a NumericDate (RFC 7519 section 4.1.4): a decoder that checks only numbers and skips
        # any other type (jwt-go's MapClaims before v4) takes a string for no exp at all.
        ("exp an hour ago, as a string", minted.mint(deployment.user, exp=str(now - _CLAIM_SKEW))),
        ("exp not a date", minted.mint(deployment.user, exp="never")),
    ]
    expect_refused(deployment, variants)


@check("token.not-yet-valid")
def test_token_not_yet_valid_is_refused(deployment: Deployment, minted) -> None:
    now = int(time.time())
    variants = [
        ("nbf in an hour", minted.mint(deployment.user, nbf=now + _CLAIM_SKEW, exp=now + 2 * _CLAIM_SKEW)),
        (
            "nbf in an hour, as a string",
            minted.mint(deployment.user, nbf=str(now + _CLAIM_SKEW), exp=now + 2 * _CLAIM_SKEW),
        ),
    ]
    expect_refused(deployment, variants)


@check("token.wrong-issuer")
def test_token_of_another_issuer_is_refused(deployment: Deployment, minted) -> None:
    issuer = minted.issuer
    if not issuer:
        skip("needs the issuer the deployment accepts (--issuer)")
    variants = [
        ("iss of another issuer", minted.mint(deployment.user, iss="https://issuer.contract-test.invalid")),
        ("no iss", minted.mint(deployment.user, iss=None)),
        # A containment test instead of equality (PyJWT 2.10.0, CVE-2024-53861) accepts these.
        ("iss containing the issuer", minted.mint(deployment.user, iss=f"{issuer}.contract-test.invalid")),
        ("iss contained in the issuer", minted.mint(deployment.user, iss=issuer[1:-1])),
        ("iss a list holding the issuer", minted.mint(deployment.user, iss=[issuer])),
        # iss is compared as a case-sensitive string, without normalising (RFC 7519 section 4.1.1,
        # OpenID Connect Discovery section 4.3): not EqualFold, not a URL with or without its slash.
        *_near_misses("iss", issuer, minted, deployment.user),
    ]
    expect_refused(deployment, variants)


@check("token.wrong-audience")
def test_token_for_another_audience_is_refused(deployment: Deployment, minted) -> None:
    audience = minted.audience
    if not audience:
        skip("needs the audience the deployment accepts (--audience)")
    variants = [
        ("aud of another audience", minted.mint(deployment.user, aud="contract-test-other-audience")),
        ("aud a list of other audiences", minted.mint(deployment.user, aud=["contract-test-other-audience"])),
        ("no aud", minted.mint(deployment.user, aud=None)),
        ("aud containing the audience", minted.mint(deployment.user, aud=f"{audience}.contract-test")),
        ("aud contained in the audience", minted.mint(deployment.user, aud=audience[1:-1])),
        *_near_misses("aud", audience, minted, deployment.user),
    ]
    expect_refused(deployment, variants)


@check("token.missing-exp")
def test_token_without_exp_is_refused(deployment: Deployment, minted) -> None:
    expect_refused(deployment, [("no exp", minted.mint(deployment.user, exp=None))])


@check("token.missing-sub")
def test_token_without_sub_is_refused(deployment: Deployment, minted) -> None:
    claims = minted.claims(deployment.user)
    del claims["sub"]
    variants = [
        ("no sub", sign(minted.header(), claims, minted.key)),
        ("an empty sub", minted.mint("")),
    ]
    expect_refused(deployment, variants)


@check("token.foreign-key")
def test_token_signed_with_a_foreign_key_is_refused(deployment: Deployment, genuine) -> None:
    claims = _valid_claims(deployment, genuine)
    algorithm = genuine[0].get("alg") if deployment.minter is None else deployment.minter.algorithm
    variants = []
    if isinstance(algorithm, str) and is_hmac(algorithm):
        variants.append(
            (
                f"{algorithm} with another secret",
                sign({"alg": algorithm, "typ": "JWT"}, claims, os.urandom(32)),
            )
        )
    elif isinstance(algorithm, str) and algorithm.startswith(("RS", "PS", "ES", "Ed")):
        variants.append(
            (
                f"{algorithm} with another key",
                sign({"alg": algorithm, "typ": "JWT"}, claims, new_private_key(algorithm)),
            )
        )
    if deployment.minter is not None and not is_hmac(deployment.minter.algorithm):
        # Algorithm confusion (RFC 8725 section 2.1): HMAC keyed with the public key the server verifies with.
        public = public_pem(deployment.minter.key)
        variants += [
            (
                f"{alg} keyed with the deployment's public key",
                sign({"alg": alg, "typ": "JWT"}, claims, public),
            )
            for alg in ("HS256", "HS512")
        ]
    # A server whose secret is missing or a default one: HMAC with an empty or a well-known secret.
    variants += [
        (f"HS256 with the {label} secret", sign({"alg": "HS256", "typ": "JWT"}, claims, secret))
        for label, secret in (("empty", b""), ("well-known 'secret'", b"secret"))
    ]
    # The key in the token itself (CVE-2018-0114): a server that trusts an embedded jwk trusts anyone.
    attacker = new_private_key("RS256")
    import jwt

    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(attacker.public_key(), as_dict=True)
    variants.append(
        (
            "RS256 with the signing key embedded as jwk",
            sign({"alg": "RS256", "typ": "JWT", "jwk": jwk}, claims, attacker),
        )
    )
    expect_refused(deployment, variants)


@check("token.unknown-kid")
def test_token_with_an_unknown_kid_is_refused(deployment: Deployment, genuine) -> None:
    claims = _valid_claims(deployment, genuine)
    algorithm = deployment.minter.algorithm if deployment.minter else genuine[0].get("alg")
    algorithm = algorithm if isinstance(algorithm, str) and is_hmac(algorithm) else None
    kids = [
        # jwt_tool's kid injections: a key file the server may read (empty, or known), and SQL that selects
        # a key the attacker chose.
        ("kid naming no key", "contract-test-unknown-kid", os.urandom(32)),
        ("kid a path to an empty file", "../../../../../../../../dev/null", b""),
        ("kid a path with a NUL byte", "/dev/null\x00", b""),
        ("kid SQL selecting a chosen key", "x' UNION SELECT 'contract-test-key'-- ", b"contract-test-key"),
    ]
    variants = [
        (f"{label}, HS256", sign({"alg": algorithm or "HS256", "typ": "JWT", "kid": kid}, claims, key))
        for label, kid, key in kids
    ]
    if algorithm is None and deployment.minter is not None:
        variants.append(
            (
                "kid naming no key, another key of the deployment's algorithm",
                sign(
                    {"alg": deployment.minter.algorithm, "typ": "JWT", "kid": "contract-test-unknown-kid"},
                    claims,
                    new_private_key(deployment.minter.algorithm),
                ),
            )
        )
    expect_refused(deployment, variants)


def _near_misses(claim: str, value: str, minted: Any, user: str) -> list[tuple[str, str]]:
    """Tokens whose `claim` differs from `value` only in case or a trailing slash: equal only to a
    deployment that normalises what it should compare exactly."""
    near = []
    if value.swapcase() != value:
        near.append((f"{claim} in another case", value.swapcase()))
    near.append(
        (f"{claim} without its trailing slash", value.rstrip("/"))
        if value.endswith("/")
        else (f"{claim} with a trailing slash", value + "/")
    )
    if value.startswith("https://"):
        near.append((f"{claim} with http for https", "http://" + value.removeprefix("https://")))
    return [(label, minted.mint(user, **{claim: other})) for label, other in near if other]


def _valid_claims(deployment: Deployment, genuine) -> dict[str, Any]:
    """Claims the deployment would accept under its own key: minted, or the genuine token's."""
    if deployment.minter is not None:
        return deployment.minter.claims(deployment.user)
    return dict(genuine[1])


def _raw(signature: str) -> bytes:
    return b64url_decode(signature)
