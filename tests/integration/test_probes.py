"""The Operations probes: liveness touches nothing, readiness follows the database, neither is rate
limited, and the server starts while its database is down."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from starlette.testclient import TestClient

from autional_sessions.db.errors import DatabaseUnavailable
from autional_sessions.http.app import create_app
from tests.spec_check import assert_conforms


def test_both_probes_answer_ok_with_a_database(client):
    for path in ("/healthz", "/readyz"):
        response = client.get(path)
        assert response.status_code == 200
        assert assert_conforms(response) == {"status": "ok"}


def test_readiness_is_a_503_problem_while_the_database_is_down_and_liveness_is_not(
    client, store, monkeypatch
):
    async def down(statement, params):
        raise DatabaseUnavailable("sqlite: unable to open database file")

    monkeypatch.setattr(store, "fetch", down)

    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert assert_conforms(ready)["type"].endswith("/service-unavailable")
    assert "Retry-After" in ready.headers
    assert client.get("/healthz").status_code == 200


def test_readiness_gives_up_on_a_database_that_does_not_answer(client, store, monkeypatch):
    async def hangs(statement, params):
        await asyncio.sleep(30)

    monkeypatch.setattr(store, "fetch", hangs)
    monkeypatch.setattr("autional_sessions.handlers.operations.READINESS_TIMEOUT_SECONDS", 0.2)

    assert client.get("/readyz").status_code == 503


def test_the_server_starts_without_its_database_and_is_ready_once_it_exists(settings, tmp_path):
    from autional_sessions.db.maintenance import open_database
    from autional_sessions.db.migrations import migrate

    path = tmp_path / "later.db"
    app_settings = dataclasses.replace(settings, database_url=f"sqlite:///{path}")
    with TestClient(create_app(app_settings), raise_server_exceptions=False) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503
        migrate(open_database(app_settings))
        assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_are_never_rate_limited(settings, database, path):
    app = create_app(dataclasses.replace(settings, rate_limit="2/minute"))
    with TestClient(app) as client:
        assert [client.get(path).status_code for _ in range(5)] == [200] * 5


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_a_probe_with_an_unknown_parameter_is_a_400_like_every_operation(client, path):
    response = client.get(path, params={"verbose": "1"})

    assert response.status_code == 400
    assert assert_conforms(response)["errors"][0]["code"] == "unknown"
