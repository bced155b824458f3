"""GET /sessions/user/{user_id}/sessions, end to end through the app, each status checked against the spec."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from tests.factories import add_session, add_user, utcnow
from tests.spec_check import assert_conforms

URL = "/sessions/user/{}/sessions"


def iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def alice(database):
    return add_user("usr_alice")


# --- 200 -----------------------------------------------------------------------------------------------


def test_lists_every_field_of_an_active_session(client, auth_headers, alice):
    session = add_session("sess_1", "usr_alice", geoip="Beijing, CN", ip="203.0.113.7", amr="webauthn")

    response = client.get(URL.format("usr_alice"), headers=auth_headers("usr_alice"))

    assert response.status_code == 200
    body = assert_conforms(response)
    assert body["items"] == [
        {
            "id": "sess_1",
            "user_id": "usr_alice",
            "tenant_id": "tnt_test",
            "status": "active",
            "amr": "webauthn",
            "authenticated_at": iso(session.authenticated_at),
            "created_at": iso(session.created_at),
            "expires_at": iso(session.expires_at),
            "idle_expires_at": iso(session.idle_expires_at),
            "last_active_at": iso(session.last_active_at),
            "ip": "203.0.113.7",
            "geoip": "Beijing, CN",
            "device_id": "dev_sess_1",
            "device_type": "desktop",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
        }
    ]
    assert body["code"] == 0
    assert body["message"] == "success"
    stamp = dt.datetime.strptime(body["timestamp"], "%Y-%m-%dT%H:%M:%SZ")
    assert abs((stamp - utcnow()).total_seconds()) < 5
    assert response.headers["content-type"] == "application/json"


def test_revoked_expired_and_timed_out_sessions_never_appear(client, auth_headers, alice):
    now = utcnow()
    add_session("sess_active", "usr_alice")
    add_session("sess_revoked", "usr_alice", status="revoked")
    add_session("sess_expired_status", "usr_alice", status="expired")
    add_session("sess_absolute_timeout", "usr_alice", expires_at=now - dt.timedelta(seconds=1))
    add_session("sess_idle_timeout", "usr_alice", idle_expires_at=now - dt.timedelta(seconds=1))
    add_session("sess_expiring_now", "usr_alice", expires_at=now)
    add_user("usr_bob")
    add_session("sess_bob", "usr_bob")

    body = assert_conforms(client.get(URL.format("usr_alice"), headers=auth_headers("usr_alice")))

    assert [item["id"] for item in body["items"]] == ["sess_active"]
    assert body["total"] == 1


def test_newest_activity_first_then_id_descending(client, auth_headers, alice):
    now = utcnow()
    add_session("sess_a", "usr_alice", last_active_at=now - dt.timedelta(minutes=30))
    add_session("sess_b", "usr_alice", last_active_at=now - dt.timedelta(minutes=1))
    add_session("sess_c", "usr_alice", last_active_at=now - dt.timedelta(minutes=30))
    add_session("sess_d", "usr_alice", last_active_at=now - dt.timedelta(minutes=10))

    body = assert_conforms(client.get(URL.format("usr_alice"), headers=auth_headers("usr_alice")))

    assert [item["id"] for item in body["items"]] == ["sess_b", "sess_d", "sess_c", "sess_a"]


def test_defaults_are_page_one_of_twenty(client, auth_headers, alice):
    for i in range(23):
        add_session(f"sess_{i:02d}", "usr_alice", last_active_at=utcnow() - dt.timedelta(minutes=i))

    body = assert_conforms(client.get(URL.format("usr_alice"), headers=auth_headers("usr_alice")))

    assert len(body["items"]) == 20
    assert body["pagination"] == {
        "page": 1,
        "page_size": 20,
        "total": 23,
        "total_pages": 2,
        "has_next": True,
        "has_prev": False,
    }


@pytest.mark.parametrize(
    ("page", "page_size", "expected_ids", "has_next", "has_prev"),
    [
        (1, 3, ["sess_00", "sess_01", "sess_02"], True, False),
        (2, 3, ["sess_03", "sess_04", "sess_05"], True, True),
        (3, 3, ["sess_06"], False, True),
        (4, 3, [], False, True),
        (1000, 3, [], False, True),
        # One short of all (the total must come from a count), and exactly all (from the page itself).
        (1, 6, [f"sess_{i:02d}" for i in range(6)], True, False),
        (2, 6, ["sess_06"], False, True),
        (1, 7, [f"sess_{i:02d}" for i in range(7)], False, False),
        (1, 100, [f"sess_{i:02d}" for i in range(7)], False, False),
    ],
)
def test_pagination_edges(client, auth_headers, alice, page, page_size, expected_ids, has_next, has_prev):
    for i in range(7):
        add_session(f"sess_{i:02d}", "usr_alice", last_active_at=utcnow() - dt.timedelta(minutes=i))

    response = client.get(
        URL.format("usr_alice"),
        params={"page": page, "page_size": page_size},
        headers=auth_headers("usr_alice"),
    )

    body = assert_conforms(response)
    assert response.status_code == 200
    assert [item["id"] for item in body["items"]] == expected_ids
    assert body["total"] == 7
    assert body["pagination"] == {
        "page": page,
        "page_size": page_size,
        "total": 7,
        "total_pages": math.ceil(7 / page_size),
        "has_next": has_next,
        "has_prev": has_prev,
    }


def test_pages_together_hold_every_active_session_once(client, auth_headers, alice):
    same_time = utcnow() - dt.timedelta(minutes=3)
    for i in range(11):
        add_session(f"sess_{i:02d}", "usr_alice", last_active_at=same_time)

    seen = []
    for page in (1, 2, 3):
        body = client.get(
            URL.format("usr_alice"), params={"page": page, "page_size": 4}, headers=auth_headers("usr_alice")
        ).json()
        seen.extend(item["id"] for item in body["items"])

    assert sorted(seen) == [f"sess_{i:02d}" for i in range(11)]
    assert len(seen) == len(set(seen))


def test_user_without_sessions_gets_an_empty_first_page(client, auth_headers, alice):
    body = assert_conforms(client.get(URL.format("usr_alice"), headers=auth_headers("usr_alice")))

    assert body["items"] == []
    assert body["total"] == 0
    assert body["pagination"] == {
        "page": 1,
        "page_size": 20,
        "total": 0,
        "total_pages": 0,
        "has_next": False,
        "has_prev": False,
    }


# --- 400 -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field", "code"),
    [
        ("page=0", "page", "range"),
        ("page=-3", "page", "range"),
        ("page=100001", "page", "range"),
        ("page=abc", "page", "format"),
        ("page=1.5", "page", "format"),
        ("page_size=0", "page_size", "range"),
        ("page_size=101", "page_size", "range"),
        ("page_size=ten", "page_size", "format"),
        ("sort=asc", "sort", "unknown"),
        ("page=1&page=2", "page", "duplicate"),
        ("page_size=5&page_size=5", "page_size", "duplicate"),
    ],
)
def test_each_bad_query_parameter_is_a_400_naming_it(client, auth_headers, alice, query, field, code):
    response = client.get(f"{URL.format('usr_alice')}?{query}", headers=auth_headers("usr_alice"))

    assert response.status_code == 400
    body = assert_conforms(response)
    assert body["errors"] == [{"field": field, "code": code, "description": body["errors"][0]["description"]}]
    assert body["errors"][0]["description"]
    assert body["code"] == 40000001
    assert body["i18n_key"] == "error.invalid_request"
    assert "Failed validating" not in response.text


@pytest.mark.parametrize(
    ("user_id", "code"),
    [("u" * 65, "length"), ("usr alice", "pattern"), ("usr<script>", "pattern")],
)
def test_a_bad_user_id_is_a_400(client, auth_headers, database, user_id, code):
    response = client.get(URL.format(user_id), headers=auth_headers(user_id))

    assert response.status_code == 400
    body = assert_conforms(response)
    assert [(e["field"], e["code"]) for e in body["errors"]] == [("user_id", code)]


def test_every_violation_is_listed_not_only_the_first(client, auth_headers, alice):
    response = client.get(
        f"{URL.format('usr_alice')}?page=0&page_size=abc&color=red&size=9", headers=auth_headers("usr_alice")
    )

    assert response.status_code == 400
    body = assert_conforms(response)
    assert sorted((e["field"], e["code"]) for e in body["errors"]) == [
        ("color", "unknown"),
        ("page", "range"),
        ("page_size", "format"),
        ("size", "unknown"),
    ]
    assert body["detail"] == "4 request parameters are invalid"


# --- 401 -----------------------------------------------------------------------------------------------


def test_no_token_is_a_401_with_a_bearer_challenge(client, alice):
    response = client.get(URL.format("usr_alice"))

    assert response.status_code == 401
    body = assert_conforms(response)
    assert response.headers["www-authenticate"] == 'Bearer realm="autional-sessions"'
    assert body["code"] == 40100001
    assert body["i18n_key"] == "error.auth.missing_token"


@pytest.mark.parametrize(
    "authorization",
    ["Basic dXNyX2FsaWNlOnB3", "Token abc", "bearer"],
    ids=["basic", "other-scheme", "scheme-without-token"],
)
def test_an_authorization_header_without_a_bearer_token_is_a_401(client, alice, authorization):
    response = client.get(URL.format("usr_alice"), headers={"Authorization": authorization})

    assert response.status_code == 401
    assert_conforms(response)
    assert response.headers["www-authenticate"].startswith("Bearer ")


# Every token here holds letters no hexadecimal id has, so "the token is not in the response" cannot
# be broken by a random trace or span id that happens to contain it.
BAD_TOKENS = {
    "malformed": (lambda make: "not.a.jwt", 40100002),
    "garbage": (lambda make: "garbage-token", 40100002),
    "bad-signature": (
        lambda make: make("usr_alice", key="another-secret-0123456789abcdef0123456789"),
        40100002,
    ),
    "tampered": (lambda make: make("usr_alice")[:-4] + "AAAA", 40100002),
    "expired": (lambda make: make("usr_alice", exp=utc_epoch() - 60), 40100003),
    "not-yet-valid": (lambda make: make("usr_alice", nbf=utc_epoch() + 3600), 40100002),
    "no-exp": (lambda make: make("usr_alice", exp=None), 40100002),
    "no-sub": (lambda make: make("usr_alice", sub=None), 40100002),
    "numeric-sub": (lambda make: make("usr_alice", sub=42), 40100002),
    "wrong-issuer": (lambda make: make("usr_alice", iss="https://evil.example"), 40100002),
    "no-issuer": (lambda make: make("usr_alice", iss=None), 40100002),
    "wrong-audience": (lambda make: make("usr_alice", aud="another-service"), 40100002),
    "unaccepted-algorithm": (lambda make: make("usr_alice", algorithm="HS512"), 40100002),
    "alg-none": (lambda make: unsigned_token("usr_alice"), 40100002),
}


def utc_epoch() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp())


def unsigned_token(sub: str) -> str:
    import base64
    import json

    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = {
        "sub": sub,
        "exp": utc_epoch() + 300,
        "iss": "https://auth.autional.test",
        "aud": "autional-sessions",
    }
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


@pytest.mark.parametrize("fault", sorted(BAD_TOKENS))
def test_each_token_fault_is_a_401_invalid_token(client, make_token, alice, fault):
    build, code = BAD_TOKENS[fault]
    token = build(make_token)

    response = client.get(URL.format("usr_alice"), headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401
    body = assert_conforms(response)
    assert body["code"] == code
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith(
        'Bearer realm="autional-sessions", error="invalid_token", error_description="'
    )
    assert token not in response.text


# --- 403 -----------------------------------------------------------------------------------------------


def test_a_token_for_another_user_is_a_403(client, auth_headers, alice):
    add_user("usr_bob")
    add_session("sess_bob", "usr_bob")

    response = client.get(URL.format("usr_bob"), headers=auth_headers("usr_alice"))

    assert response.status_code == 403
    body = assert_conforms(response)
    assert body["code"] == 40300001
    assert "sess_bob" not in response.text


def test_403_does_not_reveal_whether_the_other_user_exists(client, auth_headers, alice):
    add_user("usr_bob")

    existing = client.get(URL.format("usr_bob"), headers=auth_headers("usr_alice")).json()
    missing = client.get(URL.format("usr_nobody"), headers=auth_headers("usr_alice")).json()

    for key in ("type", "title", "status", "detail", "code", "i18n_key"):
        assert existing[key] == missing[key]


def test_403_is_decided_before_any_database_lookup(client, auth_headers, alice, break_database):
    break_database()

    response = client.get(URL.format("usr_bob"), headers=auth_headers("usr_alice"))

    assert response.status_code == 403


# --- 404 -----------------------------------------------------------------------------------------------


def test_a_valid_token_for_a_user_that_does_not_exist_is_a_404(client, auth_headers, database):
    response = client.get(URL.format("usr_ghost"), headers=auth_headers("usr_ghost"))

    assert response.status_code == 404
    body = assert_conforms(response)
    assert body["code"] == 40400001
    assert body["i18n_key"] == "error.user_not_found"


def test_a_page_past_the_end_of_an_existing_user_is_not_a_404(client, auth_headers, alice):
    response = client.get(URL.format("usr_alice"), params={"page": 50}, headers=auth_headers("usr_alice"))

    assert response.status_code == 200


# --- 500 -----------------------------------------------------------------------------------------------


def test_an_unexpected_database_error_is_a_500_that_reveals_nothing(
    client, auth_headers, alice, break_database
):
    break_database()

    response = client.get(URL.format("usr_alice"), headers=auth_headers("usr_alice"))

    assert response.status_code == 500
    body = assert_conforms(response)
    assert body["code"] == 50000001
    assert "sessions_secret_internal" not in response.text
    assert "Traceback" not in response.text
    assert body["request_id"] in body["detail"]


def test_an_error_inside_an_error_handler_is_still_a_problem_with_the_request_id(
    client, auth_headers, alice, break_database, monkeypatch
):
    # The 500 handler itself fails (its log call here): the server-error middleware's last resort
    # answers, with the request's id, instead of Starlette's plain text.
    def failing(*args, **kwargs):
        raise RuntimeError("the log is broken")

    monkeypatch.setattr("autional_sessions.http.app.logger.error", failing)
    break_database()

    response = client.get(
        URL.format("usr_alice"), headers={**auth_headers("usr_alice"), "X-Request-ID": "req-42"}
    )

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "req-42"
    assert response.json()["request_id"] == "req-42"
    assert response.json()["type"].endswith("/internal-error")
