"""A corpus of hostile requests, each with the problem it must get: none gets a 2xx or a 5xx, and
nothing of what they carry (tokens, keys, session ids) reaches the log."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest

from autional_sessions.testing import TEST_AUDIENCE, TEST_ISSUER, TEST_SECRET
from tests.factories import add_session, add_user

USER = "usr_alice"
URL = f"/sessions/user/{USER}/sessions"
ATTACKER_SECRET = "attacker-" + "f" * 64
NOT_UTF8 = bytes([0xFF, 0xFE])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values = {"sub": USER, "iat": now, "exp": now + 300, "iss": TEST_ISSUER, "aud": TEST_AUDIENCE}
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def token(
    key: Any = TEST_SECRET, algorithm: str = "HS256", headers: dict | None = None, **overrides: Any
) -> str:
    return jwt.encode(claims(**overrides), key, algorithm=algorithm, headers=headers)


def resigned() -> str:
    """A valid token whose payload was swapped for another user's, the signature kept."""
    header, _, signature = token().split(".")
    return f"{header}.{b64(json.dumps(claims(sub='usr_bob')).encode())}.{signature}"


def raw(header: dict, payload: dict, signature: bytes = b"sig") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}.{b64(signature)}"


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@dataclass(frozen=True)
class Case:
    name: str
    status: int
    problem: str
    headers: Callable[[], dict[str, str]] = field(default=lambda: bearer(token()))
    path: str = URL
    params: Any = None


CASES = [
    # --- tokens -------------------------------------------------------------------------------------
    Case("no credentials", 401, "missing-credentials", headers=dict),
    Case("valid jwt under Basic", 401, "missing-credentials", lambda: {"Authorization": f"Basic {token()}"}),
    Case("empty bearer", 401, "invalid-token", lambda: {"Authorization": "Bearer "}),
    Case("forged signature", 401, "invalid-token", lambda: bearer(token(key=ATTACKER_SECRET))),
    Case("truncated", 401, "invalid-token", lambda: bearer(token()[:-12])),
    Case("two segments", 401, "invalid-token", lambda: bearer(".".join(token().split(".")[:2]))),
    Case("oversized", 401, "invalid-token", lambda: bearer(token(padding="x" * 60_000))),
    Case("not base64", 401, "invalid-token", lambda: bearer("!!!.@@@.###")),
    Case("header not utf-8", 401, "invalid-token", lambda: bearer(b64(NOT_UTF8) + ".e30.c2ln")),
    Case("header not json", 401, "invalid-token", lambda: bearer(f"{b64(b'[1,2')}.e30.c2ln")),
    Case("re-signed payload", 401, "invalid-token", lambda: bearer(resigned())),
    Case("expired", 401, "token-expired", lambda: bearer(token(exp=int(time.time()) - 60))),
    Case("not yet valid", 401, "invalid-token", lambda: bearer(token(nbf=int(time.time()) + 600))),
    Case("issued in the future", 401, "invalid-token", lambda: bearer(token(iat=int(time.time()) + 600))),
    Case("wrong audience", 401, "invalid-token", lambda: bearer(token(aud="someone-else"))),
    Case("wrong issuer", 401, "invalid-token", lambda: bearer(token(iss="https://evil.example"))),
    Case("alg none", 401, "invalid-token", lambda: bearer(token(key=None, algorithm="none"))),
    Case(
        "alg none, signature kept",
        401,
        "invalid-token",
        lambda: bearer(raw({"alg": "none", "typ": "JWT"}, claims(), b"whatever")),
    ),
    Case("alg not configured", 401, "invalid-token", lambda: bearer(token(algorithm="HS512"))),
    Case("alg RS256 with the secret", 401, "invalid-token", lambda: bearer(raw({"alg": "RS256"}, claims()))),
    Case(
        "kid path traversal",
        401,
        "invalid-token",
        lambda: bearer(token(key=ATTACKER_SECRET, headers={"kid": "../../../../etc/passwd"})),
    ),
    Case(
        "kid sql injection",
        401,
        "invalid-token",
        lambda: bearer(token(key=ATTACKER_SECRET, headers={"kid": "x' UNION SELECT 'key' --"})),
    ),
    Case(
        "jku to the attacker",
        401,
        "invalid-token",
        lambda: bearer(token(key=ATTACKER_SECRET, headers={"jku": "https://evil.example/jwks.json"})),
    ),
    Case(
        "x5u to the attacker",
        401,
        "invalid-token",
        lambda: bearer(token(key=ATTACKER_SECRET, headers={"x5u": "https://evil.example/cert.pem"})),
    ),
    Case(
        "embedded jwk",
        401,
        "invalid-token",
        lambda: bearer(
            token(
                key=ATTACKER_SECRET,
                headers={"jwk": {"kty": "oct", "k": b64(ATTACKER_SECRET.encode())}},
            )
        ),
    ),
    Case("typ secevent", 401, "invalid-token", lambda: bearer(token(headers={"typ": "secevent+jwt"}))),
    Case("crit header", 401, "invalid-token", lambda: bearer(token(headers={"crit": ["exp"], "exp": 1}))),
    Case("no sub", 401, "invalid-token", lambda: bearer(token(sub=None))),
    Case("sub not a string", 401, "invalid-token", lambda: bearer(token(sub=12345))),
    Case("tenant claim a list", 401, "invalid-token", lambda: bearer(token(tenant_id=["tnt_a", "tnt_b"]))),
    Case("spaces in the token", 401, "invalid-token", lambda: bearer("a b c")),
    # --- parameters -----------------------------------------------------------------------------------
    Case("duplicate page", 400, "invalid-request", params=[("page", "1"), ("page", "2")]),
    Case("huge page_size", 400, "invalid-request", params={"page_size": "1" + "0" * 30}),
    Case("int64 overflow", 400, "invalid-request", params={"page": "99999999999999999999"}),
    Case("negative page", 400, "invalid-request", params={"page": "-1"}),
    Case("exponent page", 400, "invalid-request", params={"page": "1e3"}),
    Case("page array", 400, "invalid-request", params={"page[]": "1"}),
    Case("huge unknown value", 400, "invalid-request", params={"debug": "x" * 10_000}),
    Case("many unknown parameters", 400, "invalid-request", params={f"p{n}": "1" for n in range(200)}),
    Case("page_size zero", 400, "invalid-request", params={"page_size": "0"}),
    # --- the path ---------------------------------------------------------------------------------------
    Case("path traversal", 404, "route-not-found", path="/sessions/user/..%2F..%2Fetc%2Fpasswd/sessions"),
    Case("dot segments", 404, "route-not-found", path="/sessions/user/../../admin/sessions"),
    Case(
        "NUL in user_id",
        400,
        "invalid-request",
        lambda: bearer(token(sub="usr\x00alice")),
        path="/sessions/user/usr%00alice/sessions",
    ),
    Case(
        "non-UTF-8 user_id",
        400,
        "invalid-request",
        lambda: bearer(token(sub="usr_\ufffd")),
        path="/sessions/user/usr_%FF%FE/sessions",
    ),
    Case(
        "sql meta in user_id",
        400,
        "invalid-request",
        lambda: bearer(token(sub="usr' OR '1'='1")),
        path="/sessions/user/usr'%20OR%20'1'='1/sessions",
    ),
    Case(
        "look-alike user_id, own token",
        400,
        "invalid-request",
        lambda: bearer(token(sub="usr_\u0430lice")),
        path="/sessions/user/usr_%D0%B0lice/sessions",
    ),
    Case(
        "look-alike user_id, alice's token",
        400,
        "invalid-request",
        path="/sessions/user/usr_%D0%B0lice/sessions",
    ),
    Case(
        "user_id too long",
        400,
        "invalid-request",
        lambda: bearer(token(sub="u" * 65)),
        path=f"/sessions/user/{'u' * 65}/sessions",
    ),
    Case("another user's sessions", 403, "user-mismatch", path="/sessions/user/usr_bob/sessions"),
]


@pytest.fixture
def alice(database) -> list[str]:
    add_user(USER)
    add_user("usr_bob")
    return [add_session(f"sess_alice_secret_{n}", USER).id for n in range(2)]


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_hostile_request_gets_its_problem(client, alice, case):
    response = client.get(case.path, headers=case.headers(), params=case.params)

    assert response.status_code == case.status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"].endswith("/" + case.problem), body
    assert "items" not in body
    if case.status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        if case.problem != "missing-credentials":
            assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_nothing_a_request_carries_reaches_the_log(client, alice, caplog):
    sent: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for case in CASES:
            headers = case.headers()
            sent.extend(v.partition(" ")[2] for v in headers.values() if v.partition(" ")[2])
            client.get(case.path, headers=headers, params=case.params)
        good = token()
        sent.append(good)
        assert client.get(URL, headers=bearer(good)).status_code == 200
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)

    assert caplog.records, "nothing was logged: the test would prove nothing"
    for value in sent:
        if len(value) >= 16:
            assert value not in text
    assert TEST_SECRET not in text and ATTACKER_SECRET not in text
    for session_id in alice:
        assert session_id not in text
