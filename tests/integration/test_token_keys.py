"""Tokens from a real identity provider: public-key algorithms from a PEM key or a JWKS, each bound to
its key type, JWKS rotation, caching and failure, and the header checks that come before any signature."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from autional_sessions.config import ConfigError, Settings
from autional_sessions.problems.factory import ProblemError
from autional_sessions.security.bearer_auth import TokenVerifier
from autional_sessions.security.token_keys import JwksKeys

SECRET = "keys-secret-" + "0123456789abcdef" * 4


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    """One private key per family, made once for the module (RSA keys take a while)."""
    return {
        "RSA": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "P-256": ec.generate_private_key(ec.SECP256R1()),
        "P-384": ec.generate_private_key(ec.SECP384R1()),
        "Ed25519": ed25519.Ed25519PrivateKey.generate(),
    }


KEY_OF = {
    "RS256": "RSA",
    "RS384": "RSA",
    "RS512": "RSA",
    "PS256": "RSA",
    "ES256": "P-256",
    "ES384": "P-384",
    "EdDSA": "Ed25519",
}


def pem(private_key: Any) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values = {"sub": "usr_keys", "iat": now, "exp": now + 300}
    values.update(overrides)
    return values


def verify(verifier: TokenVerifier, token: str) -> dict[str, Any]:
    return asyncio.run(verifier.verify(token))


def refusal(verifier: TokenVerifier, token: str) -> ProblemError:
    with pytest.raises(ProblemError) as raised:
        verify(verifier, token)
    return raised.value


def pem_verifier(
    tmp_path: Path, private_key: Any, algorithms: tuple[str, ...], **overrides: Any
) -> TokenVerifier:
    path = tmp_path / "key.pem"
    path.write_bytes(pem(private_key))
    return TokenVerifier(Settings(jwt_algorithms=algorithms, jwt_public_key_file=str(path), **overrides))


# --- a PEM public key ---------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", sorted(KEY_OF))
def test_each_public_key_algorithm_verifies_with_a_pem_key(tmp_path, keys, algorithm):
    private_key = keys[KEY_OF[algorithm]]
    verifier = pem_verifier(tmp_path, private_key, (algorithm,))

    token = jwt.encode(claims(), private_key, algorithm=algorithm)

    assert verify(verifier, token)["sub"] == "usr_keys"


def test_a_pem_key_of_the_wrong_family_is_refused_at_start_up_naming_the_variable(tmp_path, keys):
    with pytest.raises(ConfigError, match="AUTIONAL_JWT_PUBLIC_KEY_FILE"):
        pem_verifier(tmp_path, keys["RSA"], ("ES256",))


def test_an_unreadable_key_file_is_refused_at_start_up(tmp_path):
    path = tmp_path / "key.pem"
    path.write_text("not a key")
    with pytest.raises(ConfigError, match="AUTIONAL_JWT_PUBLIC_KEY_FILE"):
        TokenVerifier(Settings(jwt_algorithms=("RS256",), jwt_public_key_file=str(path)))


def test_an_es384_token_is_refused_by_a_p256_key_even_when_both_algorithms_are_configured(tmp_path, keys):
    verifier = pem_verifier(tmp_path, keys["P-256"], ("ES256", "ES384"))

    problem = refusal(verifier, jwt.encode(claims(), keys["P-384"], algorithm="ES384"))

    assert problem.type_name == "invalid-token"


def forge_hs256(payload: dict[str, Any], key: bytes) -> str:
    """An HS256 token keyed with arbitrary bytes, as an attacker would make it (PyJWT refuses to)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = f"{header}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def test_the_public_key_used_as_an_hmac_secret_is_refused(tmp_path, keys):
    # RS256 and HS256 both accepted: the HS256 token must be checked with the HMAC secret, never with the
    # public key, which anyone can have.
    verifier = pem_verifier(tmp_path, keys["RSA"], ("RS256", "HS256"), jwt_secret=SECRET)

    problem = refusal(verifier, forge_hs256(claims(), pem(keys["RSA"])))

    assert problem.type_name == "invalid-token"
    assert "signature" in problem.detail


def test_an_hmac_token_is_refused_by_a_public_key_only_server(tmp_path, keys):
    verifier = pem_verifier(tmp_path, keys["RSA"], ("RS256",))

    problem = refusal(verifier, jwt.encode(claims(), SECRET, algorithm="HS256"))

    assert "algorithm" in problem.detail


def test_alg_none_is_refused_whatever_the_configuration(tmp_path, keys):
    verifier = pem_verifier(tmp_path, keys["RSA"], ("RS256", "HS256"), jwt_secret=SECRET)

    problem = refusal(verifier, jwt.encode(claims(), None, algorithm="none"))

    assert "algorithm" in problem.detail


# --- header checks before the signature ---------------------------------------------------------------


def hs_verifier(**overrides: Any) -> TokenVerifier:
    return TokenVerifier(Settings(jwt_secret=SECRET, **overrides))


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+jwt", "application/at+jwt"])
def test_jwt_types_are_accepted(typ):
    token = jwt.encode(claims(), SECRET, algorithm="HS256", headers={"typ": typ})

    assert verify(hs_verifier(), token)["sub"] == "usr_keys"


@pytest.mark.parametrize("typ", ["secevent+jwt", "JOSE", "dpop+jwt", 7])
def test_other_types_are_refused(typ):
    token = jwt.encode(claims(), SECRET, algorithm="HS256", headers={"typ": typ})

    assert "typ" in refusal(hs_verifier(), token).detail


def test_an_unknown_critical_header_is_refused():
    token = jwt.encode(claims(), SECRET, algorithm="HS256", headers={"crit": ["exp"], "exp": 1})

    # PyJWT refuses it while reading the header, before this server looks: either way, a 401.
    assert refusal(hs_verifier(), token).type_name == "invalid-token"


def test_a_token_over_the_size_bound_is_refused_before_parsing():
    token = jwt.encode(claims(padding="x" * 9000), SECRET, algorithm="HS256")

    assert "larger" in refusal(hs_verifier(), token).detail
    assert verify(hs_verifier(jwt_max_bytes=16384), token)["sub"] == "usr_keys"


def test_exp_is_required():
    token = jwt.encode({"sub": "usr_keys"}, SECRET, algorithm="HS256")

    assert "exp" in refusal(hs_verifier(), token).detail


def test_iat_in_the_future_beyond_the_leeway_is_refused():
    token = jwt.encode(claims(iat=int(time.time()) + 600), SECRET, algorithm="HS256")

    assert refusal(hs_verifier(), token).type_name == "invalid-token"


# --- a JWKS -------------------------------------------------------------------------------------------


class KeySetServer:
    """A JWKS endpoint on localhost whose answer the test changes; counts the requests it gets."""

    def __init__(self) -> None:
        self.document: Any = {"keys": []}
        self.status = 200
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                body = (
                    outer.document
                    if isinstance(outer.document, bytes)
                    else json.dumps(outer.document).encode()
                )
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def publish(self, *entries: tuple[str, Any, str]) -> None:
        """Publish (kid, private key, alg) entries as the public JWK set."""
        keys = []
        for kid, private_key, algorithm in entries:
            jwk = json.loads(
                jwt.algorithms.get_default_algorithms()[algorithm].to_jwk(private_key.public_key())
            )
            keys.append({**jwk, "kid": kid, "alg": algorithm, "use": "sig"})
        self.document = {"keys": keys}

    def close(self) -> None:
        self._server.shutdown()


@pytest.fixture
def jwks() -> Iterator[KeySetServer]:
    server = KeySetServer()
    yield server
    server.close()


def jwks_verifier(url: str, **key_set_options: Any) -> TokenVerifier:
    verifier = TokenVerifier(Settings(jwt_algorithms=("RS256", "ES256", "EdDSA"), jwt_jwks_url=url))
    if key_set_options:
        verifier._public_keys = JwksKeys(url, **{"refresh_seconds": 300, **key_set_options})
    return verifier


def signed(private_key: Any, algorithm: str, kid: str | None, **headers: Any) -> str:
    extra = {"kid": kid} if kid else {}
    return jwt.encode(claims(), private_key, algorithm=algorithm, headers={**extra, **headers})


def test_jwks_keys_are_selected_by_kid_and_cached(jwks, keys):
    jwks.publish(("k-rsa", keys["RSA"], "RS256"), ("k-ec", keys["P-256"], "ES256"))
    verifier = jwks_verifier(jwks.url)

    async def scenario() -> None:
        for _ in range(5):
            assert (await verifier.verify(signed(keys["RSA"], "RS256", "k-rsa")))["sub"] == "usr_keys"
            assert (await verifier.verify(signed(keys["P-256"], "ES256", "k-ec")))["sub"] == "usr_keys"

    asyncio.run(scenario())
    assert jwks.requests == 1


def test_a_key_published_after_start_is_accepted_without_a_restart(jwks, keys):
    jwks.publish(("k-old", keys["RSA"], "RS256"))
    verifier = jwks_verifier(jwks.url, min_refetch_seconds=0.2)

    async def scenario() -> None:
        assert (await verifier.verify(signed(keys["RSA"], "RS256", "k-old")))["sub"] == "usr_keys"
        jwks.publish(("k-old", keys["RSA"], "RS256"), ("k-new", keys["Ed25519"], "EdDSA"))
        await asyncio.sleep(0.3)
        assert (await verifier.verify(signed(keys["Ed25519"], "EdDSA", "k-new")))["sub"] == "usr_keys"

    asyncio.run(scenario())
    assert jwks.requests == 2


def test_a_kept_token_is_refused_once_its_key_is_withdrawn_from_the_jwks(jwks, keys):
    jwks.publish(("k-old", keys["RSA"], "RS256"), ("k-new", keys["P-256"], "ES256"))
    verifier = jwks_verifier(jwks.url, refresh_seconds=0.2, min_refetch_seconds=0)
    token = signed(keys["RSA"], "RS256", "k-old")

    async def scenario() -> ProblemError:
        assert (await verifier.verify(token))["sub"] == "usr_keys"  # verified once, and kept
        jwks.publish(("k-new", keys["P-256"], "ES256"))
        await asyncio.sleep(0.3)
        await verifier.verify(signed(keys["P-256"], "ES256", "k-new"))  # the stale set is fetched again
        await asyncio.sleep(0.1)
        with pytest.raises(ProblemError) as raised:
            await verifier.verify(token)
        return raised.value

    assert asyncio.run(scenario()).detail == "The token is signed with a key this server does not know"


def test_a_flood_of_unknown_kids_fetches_the_jwks_only_a_few_times(jwks, keys):
    jwks.publish(("k-rsa", keys["RSA"], "RS256"))
    verifier = jwks_verifier(jwks.url)

    async def scenario() -> list[BaseException | dict]:
        tokens = [signed(keys["RSA"], "RS256", f"made-up-{n}") for n in range(200)]
        return await asyncio.gather(*(verifier.verify(t) for t in tokens), return_exceptions=True)

    outcomes = asyncio.run(scenario())
    assert all(isinstance(o, ProblemError) and o.type_name == "invalid-token" for o in outcomes)
    # The first fetch, and at most one refetch (none here: it came less than 15 s after the first).
    assert jwks.requests <= 2


@pytest.mark.parametrize("failure", ["status", "malformed", "empty"])
def test_a_jwks_that_fails_keeps_the_last_good_keys_and_is_logged(jwks, keys, caplog, failure):
    jwks.publish(("k-rsa", keys["RSA"], "RS256"))
    verifier = jwks_verifier(jwks.url, refresh_seconds=0, min_refetch_seconds=0)
    token = signed(keys["RSA"], "RS256", "k-rsa")

    async def scenario() -> None:
        assert (await verifier.verify(token))["sub"] == "usr_keys"
        if failure == "status":
            jwks.status = 500
        elif failure == "malformed":
            jwks.document = b"<html>not json"
        else:
            jwks.document = {"keys": []}
        with caplog.at_level(logging.WARNING, logger="autional_sessions.token_keys"):
            # A stale key set starts a fetch on the next token and serves it with the keys in hand.
            assert (await verifier.verify(token))["sub"] == "usr_keys"
            await asyncio.sleep(0.3)
            assert (await verifier.verify(token))["sub"] == "usr_keys"

    asyncio.run(scenario())
    assert jwks.requests >= 2
    assert any("JWKS fetch" in r.getMessage() and "keeping" in r.getMessage() for r in caplog.records)


def test_a_jwks_unreachable_from_the_start_is_a_503_not_a_bad_token(keys):
    verifier = jwks_verifier("http://127.0.0.1:9/jwks.json")

    problem = refusal(verifier, signed(keys["RSA"], "RS256", "k-rsa"))

    assert problem.type_name == "service-unavailable"


def test_jku_x5u_and_embedded_jwk_headers_are_never_followed(jwks, keys):
    attacker = KeySetServer()
    attacker_key = ec.generate_private_key(ec.SECP256R1())
    attacker.publish(("evil", attacker_key, "ES256"))
    jwks.publish(("k-rsa", keys["RSA"], "RS256"))
    verifier = jwks_verifier(jwks.url)
    embedded = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(attacker_key.public_key()))
    try:
        tokens = [
            signed(attacker_key, "ES256", "evil", jku=attacker.url),
            signed(attacker_key, "ES256", "evil", x5u=attacker.url),
            signed(attacker_key, "ES256", None, jwk=embedded),
        ]
        for token in tokens:
            assert refusal(verifier, token).type_name == "invalid-token"
        assert attacker.requests == 0
    finally:
        attacker.close()


def test_a_token_through_the_app_with_a_jwks(jwks, keys, database, tmp_path, settings):
    import dataclasses

    from starlette.testclient import TestClient

    from autional_sessions.http.app import create_app
    from tests.factories import add_session, add_user

    add_user("usr_keys")
    add_session("sess_keys_1", "usr_keys")
    jwks.publish(("k-rsa", keys["RSA"], "RS256"))
    app_settings = dataclasses.replace(
        settings, jwt_algorithms=("RS256",), jwt_jwks_url=jwks.url, jwt_issuer=None, jwt_audience=None
    )
    with TestClient(create_app(app_settings), raise_server_exceptions=False) as client:
        ok = client.get(
            "/sessions/user/usr_keys/sessions",
            headers={"Authorization": f"Bearer {signed(keys['RSA'], 'RS256', 'k-rsa')}"},
        )
        forged = client.get(
            "/sessions/user/usr_keys/sessions",
            headers={"Authorization": f"Bearer {jwt.encode(claims(), SECRET, algorithm='HS256')}"},
        )

    assert ok.status_code == 200, ok.text
    assert [item["id"] for item in ok.json()["items"]] == ["sess_keys_1"]
    assert forged.status_code == 401
    assert 'error="invalid_token"' in forged.headers["WWW-Authenticate"]
