"""The metrics and the access log of the real app, as `create_app` wires them, called as uvicorn calls
the app (scopes without `extensions`)."""

from __future__ import annotations

import asyncio
import json

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import add_user
from tests.observed_app import SECRET_USER, SESSIONS_TEMPLATE

URL = f"/sessions/user/{SECRET_USER}/sessions?page=1"


def request_counts(text: str) -> dict[tuple[str, str, str], float]:
    return {
        (s.labels["route"], s.labels["method"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "autional_sessions_http_requests"
        for s in family.samples
        if s.name.endswith("_total")
    }


def test_requests_to_the_real_app_are_counted_and_logged_by_template(app, store, auth_headers, access_log):
    add_user(SECRET_USER)

    async def requests() -> tuple[str, list[int], str]:
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                before = (await client.get("/metrics")).text
                ok = await client.get(URL, headers=auth_headers(SECRET_USER))
                forbidden = await client.get(URL, headers=auth_headers("usr_other"))
                after = (await client.get("/metrics")).text
            return before, [ok.status_code, forbidden.status_code], after
        finally:
            await store.close()

    before, statuses, after = asyncio.run(requests())

    assert statuses == [200, 403]
    counted_before, counted_after = request_counts(before), request_counts(after)
    for status in statuses:
        key = (SESSIONS_TEMPLATE, "GET", str(status))
        assert counted_after[key] - counted_before.get(key, 0) == 1
    assert SECRET_USER not in after
    lines = [json.loads(line) for line in access_log.getvalue().splitlines()]
    api_lines = [line for line in lines if line["route"] == SESSIONS_TEMPLATE]
    assert [line["status"] for line in api_lines] == statuses
    assert all(line["request_id"].startswith("req_") for line in lines)
    assert SECRET_USER not in access_log.getvalue()


def test_with_metrics_off_there_is_no_metrics_endpoint_and_requests_are_still_logged(
    settings, store, auth_headers, access_log
):
    import dataclasses

    from autional_sessions.http.app import create_app

    add_user("usr_metrics_off")
    app = create_app(dataclasses.replace(settings, metrics=False), store=store)

    async def requests() -> tuple[int, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            ok = await client.get(
                "/sessions/user/usr_metrics_off/sessions", headers=auth_headers("usr_metrics_off")
            )
            return ok.status_code, (await client.get("/metrics")).status_code

    assert asyncio.run(requests()) == (200, 404)
    assert [json.loads(line)["status"] for line in access_log.getvalue().splitlines()] == [200, 404]
