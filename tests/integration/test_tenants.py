"""Tenant isolation: no token reads another user's or another tenant's sessions, through any
combination of path, query and claims."""

from __future__ import annotations

import itertools

import pytest

from tests.factories import add_session, add_user

URL = "/sessions/user/{}/sessions"
# user -> tenant
USERS = {"usr_alice": "tnt_a", "usr_carol": "tnt_a", "usr_bob": "tnt_b"}
SUBJECTS = [*USERS, "usr_ghost"]
# What a token may say of its tenant: nothing, each tenant, one nobody has.
TENANT_CLAIMS = [None, "tnt_a", "tnt_b", "tnt_zzz"]
QUERIES = [{}, {"page_size": 100}, {"tenant_id": "tnt_b"}, {"user_id": "usr_bob"}]


@pytest.fixture
def tenants(database) -> dict[str, set[str]]:
    """Each user's sessions; usr_alice also has one stored under the other tenant (bad data, or a
    session from a tenant move), which a tnt_a token must never see."""
    sessions: dict[str, set[str]] = {}
    for user, tenant in USERS.items():
        add_user(user, tenant_id=tenant)
        sessions[user] = {add_session(f"sess_{user}_{n}", user, tenant_id=tenant).id for n in range(2)}
    add_session("sess_usr_alice_elsewhere", "usr_alice", tenant_id="tnt_b")
    return sessions


def expected(subject: str, tenant: str | None, path_user: str, query: dict) -> tuple[int, str | None]:
    """(status, problem code or None) the contract requires."""
    if set(query) - {"page_size"}:
        return 400, "invalid-request"
    if subject != path_user:
        return 403, "user-mismatch"
    if subject == "usr_ghost":
        return 404, "user-not-found"
    if tenant is not None and tenant != USERS[subject]:
        return 403, "tenant-mismatch"
    return 200, None


@pytest.mark.parametrize(
    ("subject", "tenant", "path_user", "query"),
    list(itertools.product(SUBJECTS, TENANT_CLAIMS, SUBJECTS, QUERIES)),
)
def test_no_token_reads_another_users_or_tenants_sessions(
    client, auth_headers, tenants, subject, tenant, path_user, query
):
    headers = auth_headers(subject, tenant_id=tenant)

    response = client.get(URL.format(path_user), params=query, headers=headers)

    status, problem = expected(subject, tenant, path_user, query)
    assert response.status_code == status, response.text
    body = response.json()
    if problem:
        assert body["type"].endswith("/" + problem)
        assert "items" not in body
        return
    ids = {item["id"] for item in body["items"]}
    assert {item["user_id"] for item in body["items"]} <= {subject}
    if tenant is None:
        assert ids == tenants[subject] | ({"sess_usr_alice_elsewhere"} if subject == "usr_alice" else set())
    else:
        assert ids == tenants[subject]
        assert {item["tenant_id"] for item in body["items"]} == {tenant}
        assert body["total"] == len(ids)


def test_another_tenants_user_is_refused_before_any_session_is_read(
    client, auth_headers, tenants, store, monkeypatch
):
    statements: list[str] = []
    real_fetch = store.fetch

    async def fetch(statement, params):
        statements.append(statement.sql)
        return await real_fetch(statement, params)

    monkeypatch.setattr(store, "fetch", fetch)

    response = client.get(URL.format("usr_bob"), headers=auth_headers("usr_bob", tenant_id="tnt_a"))

    assert response.status_code == 403
    assert statements and not any('"sessions"' in sql for sql in statements)


@pytest.mark.parametrize("claim", [7, "", ["tnt_a"]])
def test_a_tenant_claim_that_is_not_a_tenant_id_is_a_401(client, auth_headers, tenants, claim):
    response = client.get(URL.format("usr_alice"), headers=auth_headers("usr_alice", tenant_id=claim))

    assert response.status_code == 401
    assert response.json()["code"] == 40100002
