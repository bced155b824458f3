"""What the service counts besides requests: database errors by kind and rate-limit refusals, read
from the app's own /metrics."""

from __future__ import annotations

import dataclasses

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from autional_sessions.db.errors import DatabaseUnavailable
from autional_sessions.http.app import create_app
from tests.factories import add_user

URL = "/sessions/user/usr_alice/sessions"


def sample(client: TestClient, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def test_database_errors_are_counted_by_kind(
    client, database, auth_headers, break_database, store, monkeypatch
):
    add_user("usr_alice")
    headers = auth_headers("usr_alice")
    name = "autional_sessions_database_errors_total"
    errors, unavailable = sample(client, name, kind="error"), sample(client, name, kind="unavailable")

    break_database()
    assert client.get(URL, headers=headers).status_code == 500

    async def down(statement, params):
        raise DatabaseUnavailable("sqlite: database is locked")

    monkeypatch.setattr(store, "fetch", down)
    assert client.get(URL, headers=headers).status_code == 503

    assert sample(client, name, kind="error") == errors + 1
    assert sample(client, name, kind="unavailable") == unavailable + 1


def test_rate_limit_refusals_are_counted_by_kind(settings, database, auth_headers):
    add_user("usr_alice")
    app = create_app(dataclasses.replace(settings, rate_limit="2/minute"))
    with TestClient(app) as client:
        name = "autional_sessions_rate_limit_refusals_total"
        before = sample(client, name, kind="ip")
        statuses = [client.get(URL, headers=auth_headers("usr_alice")).status_code for _ in range(3)]

        assert statuses == [200, 200, 429]
        assert sample(client, name, kind="ip") == before + 1
