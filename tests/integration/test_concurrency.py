"""Many requests at once on one event loop (one worker): each caller gets its own rows, never another's."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.factories import add_session, add_user

USERS = [f"usr_conc{n:02d}" for n in range(10)]
REQUESTS_PER_USER = 20


@pytest.mark.slow
def test_concurrent_requests_on_one_loop_each_get_their_own_rows(app, database, auth_headers):
    for n, user in enumerate(USERS):
        add_user(user)
        for s in range(n + 1):  # each user a different number of sessions, so totals tell them apart
            add_session(f"sess_{user}_{s}", user)
    headers = {user: auth_headers(user) for user in USERS}

    async def one(client: httpx.AsyncClient, user: str) -> tuple[str, httpx.Response]:
        return user, await client.get(f"/sessions/user/{user}/sessions", headers=headers[user])

    async def all_at_once() -> list[tuple[str, httpx.Response]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            calls = [one(client, user) for _ in range(REQUESTS_PER_USER) for user in USERS]
            return await asyncio.gather(*calls)

    answers = asyncio.run(all_at_once())

    assert len(answers) == len(USERS) * REQUESTS_PER_USER
    for user, response in answers:
        assert response.status_code == 200, response.text
        body = response.json()
        n = USERS.index(user)
        assert body["total"] == n + 1
        assert {item["user_id"] for item in body["items"]} == {user}
        assert sorted(item["id"] for item in body["items"]) == sorted(
            f"sess_{user}_{s}" for s in range(n + 1)
        )
