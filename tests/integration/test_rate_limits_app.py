"""Rate limits through the app: per client address (from trusted proxies only) and per token subject,
429 problems with Retry-After and the rate-limit headers, and CORS for the configured origins."""

from __future__ import annotations

import asyncio
import dataclasses

import httpx
import pytest

from autional_sessions.http.app import create_app
from autional_sessions.security.rate_limiter import RateLimits
from tests.factories import add_user
from tests.spec_check import assert_conforms

PROXY = "10.0.0.1"
URL = "/sessions/user/{}/sessions"


@pytest.fixture
def users(database) -> None:
    for user in ("usr_alice", "usr_bob"):
        add_user(user)


def send_all(app, requests: list[tuple[str, str, dict[str, str]]]) -> list[httpx.Response]:
    """(peer address, user, headers) requests, one after another, on one event loop."""

    async def run() -> list[httpx.Response]:
        responses = []
        for peer, user, headers in requests:
            transport = httpx.ASGITransport(app=app, client=(peer, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                responses.append(await client.get(URL.format(user), headers=headers))
        return responses

    return asyncio.run(run())


def limited_app(settings, limit: str = "3/minute", **overrides):
    values = {"rate_limit": limit, "trusted_proxies": (PROXY,), **overrides}
    return create_app(dataclasses.replace(settings, **values))


def test_past_the_limit_a_subject_gets_a_429_problem_with_retry_after(settings, users, auth_headers):
    app = limited_app(settings)
    headers = auth_headers("usr_alice")
    # From a different address each time, through the trusted proxy: only the subject's budget runs out.
    requests = [(PROXY, "usr_alice", {**headers, "X-Forwarded-For": f"198.51.100.{n}"}) for n in range(4)]

    responses = send_all(app, requests)

    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert [r.headers["RateLimit-Remaining"] for r in responses[:3]] == ["2", "1", "0"]
    assert all(r.headers["RateLimit-Limit"] == "3" for r in responses)
    refused = responses[-1]
    body = assert_conforms(refused)
    assert body["code"] == 42900001
    assert body["retry_after"] == int(refused.headers["Retry-After"]) >= 1


def test_another_subject_has_a_budget_of_its_own(settings, users, auth_headers):
    app = limited_app(settings)
    alice, bob = auth_headers("usr_alice"), auth_headers("usr_bob")
    requests = [(PROXY, "usr_alice", {**alice, "X-Forwarded-For": f"198.51.100.{n}"}) for n in range(4)]
    requests.append((PROXY, "usr_bob", {**bob, "X-Forwarded-For": "198.51.100.99"}))

    responses = send_all(app, requests)

    assert [r.status_code for r in responses] == [200, 200, 200, 429, 200]


def test_a_flood_of_bad_tokens_from_one_address_is_limited_by_its_address(settings, users):
    app = limited_app(settings)
    requests = [("192.0.2.50", "usr_alice", {"Authorization": f"Bearer forged.{n}.token"}) for n in range(5)]

    responses = send_all(app, requests)

    assert [r.status_code for r in responses] == [401, 401, 401, 429, 429]


def test_every_response_of_a_limited_operation_carries_the_budget_its_errors_too(
    settings, users, auth_headers
):
    # The draft's headers, as GitHub's API sends them: on the 2xx and on every error a counted request got.
    app = limited_app(settings, limit="10/minute")
    alice = auth_headers("usr_alice")
    requests = [
        (PROXY, "usr_alice", alice),  # 200
        (PROXY, "usr$alice", alice),  # 400 invalid-request
        (PROXY, "usr_alice", {}),  # 401 missing-credentials
        (PROXY, "usr_alice", {"Authorization": "Bearer forged.token.here"}),  # 401 invalid-token
        (PROXY, "usr_bob", alice),  # 403 user-mismatch
        (PROXY, "usr_nobody", auth_headers("usr_nobody")),  # 404 user-not-found
    ]

    responses = send_all(app, requests)

    assert [r.status_code for r in responses] == [200, 400, 401, 401, 403, 404]
    remaining = [int(r.headers["RateLimit-Remaining"]) for r in responses]
    assert remaining == sorted(remaining, reverse=True) and remaining[-1] < remaining[0]
    for response in responses:
        assert response.headers["RateLimit-Limit"] == "10"
        assert len(response.headers.get_list("RateLimit-Remaining")) == 1
        assert "Retry-After" not in response.headers
        assert_conforms(response)


def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(settings, users, auth_headers):
    app = limited_app(settings, limit="3/minute")
    # A caller that is not the proxy makes up a new address per request: its own address still counts.
    requests = [
        ("192.0.2.77", f"usr_{name}", {**auth_headers(f"usr_{name}"), "X-Forwarded-For": f"203.0.113.{n}"})
        for n, name in enumerate(["alice", "bob", "alice", "bob"])
    ]

    responses = send_all(app, requests)

    assert [r.status_code for r in responses] == [200, 200, 200, 429]


def test_an_unreachable_redis_lets_requests_through_without_limit_headers(settings, users, auth_headers):
    app = limited_app(settings, redis_url="redis://127.0.0.1:1/0")

    responses = send_all(app, [(PROXY, "usr_alice", auth_headers("usr_alice")) for _ in range(5)])

    assert [r.status_code for r in responses] == [200] * 5
    assert all("RateLimit-Limit" not in r.headers for r in responses)


def test_an_injected_limiter_is_used_as_given(settings, users, auth_headers):
    limits = RateLimits("2/minute")
    app = create_app(settings, rate_limits=limits)

    responses = send_all(app, [(PROXY, "usr_alice", auth_headers("usr_alice")) for _ in range(3)])

    assert [r.status_code for r in responses] == [200, 200, 429]


# --- CORS ---------------------------------------------------------------------------------------------

ORIGIN = "https://app.example.com"


def preflight(client, origin: str):
    return client.options(
        URL.format("usr_alice"),
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )


def test_a_preflight_from_an_allowed_origin_is_answered_without_credentials(settings, users):
    from starlette.testclient import TestClient

    app = create_app(dataclasses.replace(settings, cors_origins=(ORIGIN,)))
    with TestClient(app) as client:
        response = preflight(client, ORIGIN)

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "GET" in response.headers["Access-Control-Allow-Methods"]
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_a_preflight_from_another_origin_is_refused(settings, users):
    from starlette.testclient import TestClient

    app = create_app(dataclasses.replace(settings, cors_origins=(ORIGIN,)))
    with TestClient(app) as client:
        response = preflight(client, "https://evil.example")

    assert "Access-Control-Allow-Origin" not in response.headers


def test_an_allowed_origins_request_can_read_the_response_headers(settings, users, auth_headers):
    from starlette.testclient import TestClient

    app = create_app(dataclasses.replace(settings, cors_origins=(ORIGIN,)))
    with TestClient(app) as client:
        response = client.get(
            URL.format("usr_alice"), headers={**auth_headers("usr_alice"), "Origin": ORIGIN}
        )

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "x-request-id" in response.headers["Access-Control-Expose-Headers"].lower()


def test_without_configured_origins_there_is_no_cors(client, users, auth_headers):
    response = client.get(URL.format("usr_alice"), headers={**auth_headers("usr_alice"), "Origin": ORIGIN})

    assert "Access-Control-Allow-Origin" not in response.headers
    assert preflight(client, ORIGIN).status_code == 405


def test_an_answer_that_skips_the_subject_s_count_is_counted_before_it_starts(settings, users):
    # A trailing slash is answered by Connexion's router with a redirect, before the token is checked
    # and the subject counted: the address is counted before that answer starts, which carries the
    # budget, and past the address's limit the answer is the 429 instead.
    app = limited_app(settings, limit="2/minute")

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [await client.get(URL.format("usr_alice") + "/") for _ in range(3)]

    responses = asyncio.run(run())

    assert [r.status_code for r in responses] == [307, 307, 429]
    assert [r.headers["RateLimit-Remaining"] for r in responses] == ["1", "0", "0"]
    refused = responses[-1].json()
    assert refused["type"].endswith("/rate-limited") and "client address" in refused["detail"]
    assert int(responses[-1].headers["Retry-After"]) >= 1
