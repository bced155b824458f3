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


# --- verified tokens kept (security/verified_tokens.py) --------------------------------------------------


def counting_decodes(v: TokenVerifier) -> list[str]:
    """The tokens the verifier's PyJWT decodes (its signature checked and its claims parsed)."""
    decoded: list[str] = []
    decode = v._jwt.decode

    def counted(token: str, *args, **kwargs):
        decoded.append(token)
        return decode(token, *args, **kwargs)

    v._jwt.decode = counted
    return decoded


def test_a_token_verified_once_skips_its_signature_on_its_next_requests_and_its_claims_are_a_copy():
    v = verifier()
    decoded = counting_decodes(v)
    token = v.issue("usr_1", 60, int(time.time()))

    async def scenario() -> list[dict]:
        first = await v.verify(token)
        first["sub"] = "usr_other"  # a caller's change reaches no later request
        return [first] + [await v.verify(token) for _ in range(3)]

    answers = asyncio.run(scenario())

    assert decoded == [token]
    assert [claims["sub"] for claims in answers[1:]] == ["usr_1"] * 3


def test_a_kept_token_is_refused_as_expired_the_moment_pyjwt_would_refuse_it():
    v = verifier()
    expires = int(time.time()) + 1
    token = jwt.encode({"sub": "usr_1", "exp": expires}, SECRET, algorithm="HS256")

    async def scenario() -> ProblemError:
        assert (await v.verify(token))["sub"] == "usr_1"
        while time.time() < expires:
            await asyncio.sleep(0.05)
        with pytest.raises(ProblemError) as raised:
            await v.verify(token)
        return raised.value

    assert asyncio.run(scenario()).type_name == "token-expired"


def test_a_token_that_differs_by_one_byte_from_a_kept_one_is_verified_in_full():
    v = verifier()
    token = v.issue("usr_1", 60, int(time.time()))
    header, payload, signature = token.split(".")
    tampered = f"{header}.{payload}.{signature[:-2]}{'A' if signature[-2] != 'A' else 'B'}{signature[-1]}"

    async def scenario() -> ProblemError:
        await v.verify(token)
        with pytest.raises(ProblemError) as raised:
            await v.verify(tampered)
        return raised.value

    assert asyncio.run(scenario()).detail == "The token signature does not verify"


def test_the_kept_tokens_are_bounded_and_none_are_kept_at_size_zero():
    v, off = verifier(jwt_cache_size=2), verifier(jwt_cache_size=0)
    decoded = counting_decodes(off)
    tokens = [v.issue(f"usr_{n}", 60, int(time.time())) for n in range(5)]

    async def scenario() -> None:
        for token in tokens:
            await v.verify(token)
            await off.verify(token)
            await off.verify(token)

    asyncio.run(scenario())

    assert len(v._verified) == 2
    assert len(decoded) == 10


def test_a_kept_token_whose_session_ends_is_refused_on_its_next_request():
    active = {"sess_1"}

    async def session_active(user_id: str, session_id: str) -> bool:
        return session_id in active

    v = TokenVerifier(Settings(jwt_secret=SECRET), session_active=session_active)
    token = v.issue("usr_1", 60, int(time.time()), sid="sess_1")

    async def scenario() -> ProblemError:
        await v.verify(token)
        active.clear()  # the session is revoked
        with pytest.raises(ProblemError) as raised:
            await v.verify(token)
        return raised.value

    assert asyncio.run(scenario()).type_name == "session-ended"


def test_a_kept_token_s_nested_claims_reach_each_request_as_they_were_signed():
    v = verifier()
    token = v.issue("usr_1", 60, int(time.time()), roles=["reader"], profile={"team": "a"})

    async def scenario() -> dict:
        first = await v.verify(token)
        first["roles"].append("admin")  # a caller's change, deep inside the claims
        first["profile"]["team"] = "b"
        second = await v.verify(token)
        second["roles"].append("owner")
        return await v.verify(token)

    third = asyncio.run(scenario())

    assert (third["roles"], third["profile"]) == (["reader"], {"team": "a"})
