from __future__ import annotations

import asyncio
import time

import jwt
import pytest

from autional_sessions.config import Settings
from autional_sessions.problems.factory import ProblemError
from autional_sessions.security.bearer_auth import TokenVerifier

SECRET = "unit-secret-" + "0123456789abcdef" * 4


def verifier(**overrides) -> TokenVerifier:
    return TokenVerifier(Settings(jwt_secret=SECRET, **overrides))


def verify(v: TokenVerifier, token: str) -> dict:
    return asyncio.run(v.verify(token))


def test_issued_tokens_verify_and_carry_issuer_and_audience():
    v = verifier(jwt_issuer="https://iss", jwt_audience="aud")

    claims = verify(v, v.issue("usr_1", 60, int(time.time())))

    assert (claims["sub"], claims["iss"], claims["aud"]) == ("usr_1", "https://iss", "aud")


def test_issuer_and_audience_are_required_when_configured():
    token = jwt.encode({"sub": "usr_1", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")

    with pytest.raises(ProblemError) as raised:
        verify(verifier(jwt_issuer="https://iss"), token)

    assert raised.value.type_name == "invalid-token"
    assert "iss" in raised.value.detail


def test_the_algorithm_comes_from_configuration_not_the_token():
    token = jwt.encode({"sub": "usr_1", "exp": int(time.time()) + 60}, SECRET, algorithm="HS384")

    with pytest.raises(ProblemError):
        verify(verifier(jwt_algorithms=("HS256",)), token)
    assert verify(verifier(jwt_algorithms=("HS256", "HS384")), token)["sub"] == "usr_1"


def test_leeway_tolerates_small_clock_skew():
    token = jwt.encode({"sub": "usr_1", "exp": int(time.time()) - 5}, SECRET, algorithm="HS256")

    assert verify(verifier(jwt_leeway=30), token)["sub"] == "usr_1"
    with pytest.raises(ProblemError) as raised:
        verify(verifier(), token)
    assert raised.value.type_name == "token-expired"


def test_a_verifier_cannot_be_built_with_a_weak_secret():
    from autional_sessions.config import ConfigError

    with pytest.raises(ConfigError):
        TokenVerifier(Settings(jwt_secret="weak"))
