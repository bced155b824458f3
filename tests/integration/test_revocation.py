"""Signing devices out: revoke one session or every other one, the current-session marker, and a token
whose session has ended refused everywhere. Run on both engines (the concurrency tests matter most on
PostgreSQL, where the two statements really run side by side)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging

import httpx
import pytest

from autional_sessions.db.models import Session
from tests.factories import add_session, add_user, utcnow
from tests.spec_check import assert_conforms

LIST = "/sessions/user/{}/sessions"
ONE = "/sessions/user/{}/sessions/{}"
OTHERS = "/sessions/user/{}/sessions/revocations"


@pytest.fixture
def alice(database) -> list[str]:
    """usr_alice with four active sessions (newest activity first), and usr_bob with one."""
    add_user("usr_alice")
    add_user("usr_bob")
    add_session("sess_bob_1", "usr_bob")
    return [
        add_session(f"sess_alice_{n}", "usr_alice", last_active_at=utcnow() - dt.timedelta(minutes=n)).id
        for n in range(4)
    ]


def listed(client, headers, user: str = "usr_alice") -> list[dict]:
    response = client.get(LIST.format(user), headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_revoking_a_session_marks_it_and_it_leaves_the_list(client, auth_headers, alice):
    headers = auth_headers("usr_alice")

    response = client.delete(ONE.format("usr_alice", "sess_alice_2"), headers=headers)

    assert response.status_code == 204, response.text
    assert_conforms(response)
    assert response.content == b""
    assert response.headers["x-request-id"] and response.headers["cache-control"] == "no-store"
    assert [item["id"] for item in listed(client, headers)] == [
        "sess_alice_0",
        "sess_alice_1",
        "sess_alice_3",
    ]
    row = Session.get_by_id("sess_alice_2")  # kept, as the audit trail
    assert row.status == "revoked"
    assert row.revoked_at is not None and abs(row.revoked_at - utcnow()) < dt.timedelta(minutes=1)


@pytest.mark.parametrize(
    "session_id",
    ["sess_alice_2", "sess_bob_1", "sess_expired", "sess_nobody"],
    ids=["twice", "other", "expired", "none"],
)
def test_a_session_the_caller_cannot_revoke_is_one_404_whatever_the_reason(
    client, auth_headers, alice, session_id
):
    add_session("sess_expired", "usr_alice", expires_at=utcnow() - dt.timedelta(minutes=1))
    headers = auth_headers("usr_alice")
    assert client.delete(ONE.format("usr_alice", "sess_alice_2"), headers=headers).status_code == 204

    response = client.delete(ONE.format("usr_alice", session_id), headers=headers)

    assert response.status_code == 404
    body = assert_conforms(response)
    assert body["type"].endswith("/session-not-found")
    assert body["detail"] == "You have no active session with this ID"
    assert Session.get_by_id("sess_bob_1").status == "active"


@pytest.mark.parametrize(
    ("method", "path"), [("DELETE", ONE.format("usr_bob", "sess_bob_1")), ("POST", OTHERS.format("usr_bob"))]
)
def test_another_users_sessions_are_refused_before_any_lookup(
    client, auth_headers, alice, break_database, method, path
):
    break_database()

    response = client.request(method, path, headers=auth_headers("usr_alice"))

    assert response.status_code == 403
    assert Session.get_by_id("sess_bob_1").status == "active"


def test_revoking_the_others_keeps_the_tokens_own_session(client, auth_headers, alice):
    headers = auth_headers("usr_alice", sid="sess_alice_1")

    response = client.post(OTHERS.format("usr_alice"), headers=headers)

    assert response.status_code == 200, response.text
    body = assert_conforms(response)
    assert body["revoked"] == 3
    # What was revoked, in the list's order, and the session kept.
    assert body["revoked_ids"] == ["sess_alice_0", "sess_alice_2", "sess_alice_3"]
    assert body["current_id"] == "sess_alice_1"
    assert [(i["id"], i["current"]) for i in listed(client, headers)] == [("sess_alice_1", True)]
    assert Session.get_by_id("sess_bob_1").status == "active"


def test_without_sid_revoking_the_others_revokes_every_session(client, auth_headers, alice):
    headers = auth_headers("usr_alice")

    first = client.post(OTHERS.format("usr_alice"), headers=headers).json()
    again = client.post(OTHERS.format("usr_alice"), headers=headers).json()

    assert (first["revoked"], first["revoked_ids"]) == (4, alice)
    assert (again["revoked"], again["revoked_ids"]) == (0, [])
    assert "current_id" not in first and "current_id" not in again
    assert listed(client, headers) == []


def test_revoking_the_others_leaves_the_list_in_place(client, auth_headers, alice):
    """A revocation is an action on the list, not its deletion: what REST tools read from a DELETE of a
    path followed by a GET of it (Schemathesis's "deleted resource still available")."""
    headers = auth_headers("usr_alice", sid="sess_alice_0")
    assert client.post(OTHERS.format("usr_alice"), headers=headers).status_code == 200

    response = client.get(LIST.format("usr_alice"), headers=headers)
    deleting = client.delete(LIST.format("usr_alice"), headers=headers)

    assert response.status_code == 200
    assert [item["id"] for item in assert_conforms(response)["items"]] == ["sess_alice_0"]
    assert deleting.status_code == 405
    assert deleting.headers["allow"] == "GET, HEAD"


def test_a_session_whose_id_is_revocations_is_one_to_revoke_by_id(client, auth_headers, alice):
    """The revocations sub-resource takes POST (its Allow says so, as the spec does); a DELETE of its path
    names a session like any other."""
    response = client.delete(OTHERS.format("usr_alice"), headers=auth_headers("usr_alice"))
    reading = client.get(OTHERS.format("usr_alice"), headers=auth_headers("usr_alice"))

    assert response.status_code == 404
    assert assert_conforms(response)["type"].endswith("/session-not-found")
    assert len(listed(client, auth_headers("usr_alice"))) == 4
    assert reading.status_code == 405
    assert reading.headers["allow"] == "POST"


def test_the_answer_lists_at_most_a_pages_worth_of_revoked_ids(client, auth_headers, database):
    add_user("usr_many")
    now = utcnow()
    for n in range(103):
        add_session(f"sess_many_{n:03d}", "usr_many", last_active_at=now - dt.timedelta(seconds=n))

    response = client.post(OTHERS.format("usr_many"), headers=auth_headers("usr_many"))

    body = assert_conforms(response)
    assert body["revoked"] == 103
    assert body["revoked_ids"] == [f"sess_many_{n:03d}" for n in range(100)]


def test_revoking_the_others_of_a_user_that_does_not_exist_is_a_404(client, auth_headers, alice):
    response = client.post(OTHERS.format("usr_ghost"), headers=auth_headers("usr_ghost"))

    assert response.status_code == 404
    assert assert_conforms(response)["type"].endswith("/user-not-found")


def test_the_list_marks_the_tokens_session_as_current(client, auth_headers, alice):
    with_sid = listed(client, auth_headers("usr_alice", sid="sess_alice_2"))
    without = listed(client, auth_headers("usr_alice"))

    assert [(i["id"], i["current"]) for i in with_sid] == [
        ("sess_alice_0", False),
        ("sess_alice_1", False),
        ("sess_alice_2", True),
        ("sess_alice_3", False),
    ]
    assert all("current" not in item for item in without)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", LIST.format("usr_alice")),
        ("POST", OTHERS.format("usr_alice")),
        ("DELETE", ONE.format("usr_alice", "sess_alice_0")),
    ],
)
def test_a_token_whose_session_was_revoked_is_refused_on_every_operation(
    client, auth_headers, alice, method, path
):
    signed_out = auth_headers("usr_alice", sid="sess_alice_3")
    assert (
        client.delete(ONE.format("usr_alice", "sess_alice_3"), headers=auth_headers("usr_alice")).status_code
        == 204
    )

    response = client.request(method, path, headers=signed_out)

    assert response.status_code == 401
    body = assert_conforms(response)
    assert body["code"] == 40100004
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert Session.get_by_id("sess_alice_0").status == "active"


@pytest.mark.parametrize("sid", ["sess_bob_1", "sess_nobody", "sess_expired"])
def test_a_sid_that_names_no_active_session_of_the_user_is_refused(client, auth_headers, alice, sid):
    add_session("sess_expired", "usr_alice", idle_expires_at=utcnow() - dt.timedelta(minutes=1))

    response = client.get(LIST.format("usr_alice"), headers=auth_headers("usr_alice", sid=sid))

    assert response.status_code == 401
    assert response.json()["type"].endswith("/session-ended")


def test_each_revocation_is_an_audit_event_without_the_raw_session_id_or_token(
    client, auth_headers, alice, caplog
):
    headers = auth_headers("usr_alice", sid="sess_alice_0")
    with caplog.at_level(logging.INFO):
        one = client.delete(ONE.format("usr_alice", "sess_alice_3"), headers=headers)
        others = client.post(OTHERS.format("usr_alice"), headers=headers)

    events = [r for r in caplog.records if r.name == "autional_sessions.audit"]
    refs = {r.session_ref for r in events}
    assert refs == {
        hashlib.sha256(s.encode()).hexdigest()[:16] for s in ("sess_alice_1", "sess_alice_2", "sess_alice_3")
    }
    assert {r.event for r in events} == {"session.revoked"}
    assert {r.actor for r in events} == {"usr_alice"}
    assert {r.request_id for r in events} == {one.headers["x-request-id"], others.headers["x-request-id"]}
    # The service's own records (the test's HTTP client logs the URLs it calls, which is not the service).
    logged = "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records if r.name != "httpx")
    assert "sess_alice" not in logged
    assert headers["Authorization"].split()[1] not in logged


def test_a_token_of_another_tenant_cannot_revoke(client, auth_headers, alice):
    response = client.post(
        OTHERS.format("usr_alice"), headers=auth_headers("usr_alice", tenant_id="tnt_other")
    )

    assert response.status_code == 403
    assert response.json()["type"].endswith("/tenant-mismatch")
    assert Session.get_by_id("sess_alice_0").status == "active"


# --- concurrency --------------------------------------------------------------------------------------


def at_once(app, requests: list[tuple[str, str, dict]]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(*(client.request(m, p, headers=h) for m, p, h in requests))

    return asyncio.run(run())


def test_two_revocations_of_one_session_at_once_give_one_204_and_one_404(app, auth_headers, alice):
    headers = auth_headers("usr_alice")
    for session_id in alice:
        statuses = sorted(
            r.status_code
            for r in at_once(app, [("DELETE", ONE.format("usr_alice", session_id), headers)] * 2)
        )
        assert statuses == [204, 404], session_id


def test_revoking_all_racing_with_revoking_one_loses_and_double_counts_nothing(app, auth_headers, database):
    add_user("usr_race")
    headers = auth_headers("usr_race")
    for round_ in range(10):
        ids = [add_session(f"sess_race_{round_}_{n}", "usr_race").id for n in range(6)]
        one, others = at_once(
            app,
            [
                ("DELETE", ONE.format("usr_race", ids[round_ % 6]), headers),
                ("POST", OTHERS.format("usr_race"), headers),
            ],
        )
        revoked_by_one = 1 if one.status_code == 204 else 0
        assert one.status_code in (204, 404)
        assert others.status_code == 200
        assert revoked_by_one + others.json()["revoked"] == len(ids), (one.status_code, others.json())
        assert (
            Session.select().where((Session.user == "usr_race") & (Session.status == "active")).count() == 0
        )
