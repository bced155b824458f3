"""A Python client generated from openapi.yaml with openapi-python-client, used against a live server:
its functions are named after the API's operationIds, it lists sessions and parses every field, and it
parses a problem. A spec change that breaks generated SDKs fails here."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from autional_sessions.db.seed import seed
from tests.checkout import REPO
from tests.postgres.support import running_server

pytestmark = pytest.mark.slow

USER = "usr_0000001"
OTHER = "usr_0000002"
PACKAGE = "autional_sessions_generated_client"


def instants(document: dict) -> dict:
    """`document` with its RFC 3339 strings as datetimes: the client writes `+00:00` where we wrote `Z`."""

    def value(v: object) -> object:
        if isinstance(v, str) and len(v) >= 20 and v[10:11] == "T":
            with contextlib.suppress(ValueError):
                return dt.datetime.fromisoformat(v)
        return v

    return {key: value(v) for key, v in document.items()}


@pytest.fixture(scope="module")
def client_package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    root = tmp_path_factory.mktemp("generated")
    config = root / "config.json"
    # No formatting hooks: the generated code is imported, not kept.
    config.write_text(json.dumps({"post_hooks": []}))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(REPO / "openapi.yaml"),
            "--meta",
            "none",
            "--config",
            str(config),
            "--output-path",
            str(root / PACKAGE),
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # A warning means a part of the spec the generator could not express: a model or operation missing.
    assert "Warning" not in result.stdout, result.stdout
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


@pytest.fixture
def server_url(database, database_url: str, tmp_path: Path) -> Iterator[str]:
    seed(database, 3, 25)
    with running_server(database_url, tmp_path / "server.log") as server:
        yield server.url


@pytest.fixture
def client(client_package: ModuleType, server_url: str, make_token) -> object:
    """The generated client, signed in as USER; a status the spec does not document raises."""
    return client_package.AuthenticatedClient(
        base_url=server_url,
        token=make_token(USER, exp=int(time.time()) + 600),
        raise_on_unexpected_status=True,
    )


def test_the_generated_client_lists_sessions_and_parses_every_field(client):
    api = importlib.import_module(f"{PACKAGE}.api.session_management.list_user_sessions")
    models = importlib.import_module(f"{PACKAGE}.models")
    response = api.sync_detailed(user_id=USER, client=client, page=1, page_size=5)

    assert response.status_code == 200
    listed = response.parsed
    assert isinstance(listed, models.DtoSessionListResponse)
    raw = json.loads(response.content)
    assert listed.total == raw["total"] > 0 and len(listed.items) == len(raw["items"]) == 5
    for item, raw_item in zip(listed.items, raw["items"], strict=True):
        assert isinstance(item, models.DtoSessionResponse)
        assert item.user_id == USER
        # The model gives back exactly what it was given: every field the server sent was parsed into a
        # declared attribute (the schemas allow no others), dates included.
        assert instants(item.to_dict()) == instants(raw_item)
        assert isinstance(item.expires_at, dt.datetime) and item.expires_at.tzinfo is not None


def test_the_generated_client_parses_a_problem(client):
    api = importlib.import_module(f"{PACKAGE}.api.session_management.list_user_sessions")
    models = importlib.import_module(f"{PACKAGE}.models")
    response = api.sync_detailed(user_id=OTHER, client=client)

    assert response.status_code == 403
    problem = response.parsed
    assert isinstance(problem, models.DtoProblem)
    raw = json.loads(response.content)
    assert problem.status == 403 and problem.type_ == raw["type"] and problem.code == raw["code"]
    assert problem.request_id == response.headers["x-request-id"]
    assert instants(problem.to_dict()) == instants(raw)


def test_operations_are_named_by_the_api_not_by_a_module_path(client_package):
    names = {
        path.stem
        for path in Path(client_package.__file__).parent.joinpath("api").rglob("*.py")
        if path.stem != "__init__"
    }
    assert names == {
        "list_user_sessions",
        "revoke_session",
        "revoke_other_sessions",
        "check_health",
        "check_readiness",
    }
