"""The sequence behind Schemathesis's ST301 ("deleted resource still available"): a DELETE of a path, then a
GET of it that still answers 200. Revoking the other sessions was once `DELETE .../sessions`, which the list
at that path survives by design; it is a POST to the list's `revocations` now.

Stock Schemathesis's stateful phase (every check, the user id pinned, a token) finds nothing on our server,
and finds ST301 on a deployment of the old design: the same server, behind a proxy that serves the old
contract and turns its DELETE of the list into the POST.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autional_sessions.spec import load_spec
from tests.checkout import checkout_env
from tests.conformance import USER
from tests.conformance.proxy import FaultProxy, Request, Response

pytestmark = pytest.mark.slow

LIST = "/sessions/user/{user_id}/sessions"
REVOCATIONS = f"{LIST}/revocations"


def old_contract() -> dict:
    """openapi.yaml as it was: revoking the others is a DELETE of the list."""
    spec = copy.deepcopy(load_spec())
    spec["paths"][LIST]["delete"] = spec["paths"].pop(REVOCATIONS)["post"]
    return spec


async def old_design(request: Request, proxy: FaultProxy) -> Response:
    if request.path == "/openapi.json":
        body = json.dumps(old_contract()).encode()
        return Response(200, (("content-type", "application/json"), ("content-length", str(len(body)))), body)
    if request.method == "DELETE" and request.operation is None and len(request.segments) == 4:
        request = dataclasses.replace(request, method="POST", path=f"{request.path}/revocations")
    return await proxy.forward(request)


def stateful_phase(url: str, token: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    (cwd / "schemathesis.toml").write_text(f'[parameters]\n"path.user_id" = "{USER}"\n')
    command = [str(Path(sys.executable).with_name("schemathesis")), "run", "--checks", "all", "--seed", "1"]
    command += ["--phases", "stateful", "-H", f"Authorization: Bearer {token}", f"{url}/openapi.json"]
    return subprocess.run(
        command, cwd=cwd, env=checkout_env(NO_COLOR="1"), capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def token(seeded, make_token) -> str:
    return make_token(USER, exp=int(time.time()) + 3600)


def test_stock_schemathesis_follows_revoke_then_list_and_finds_nothing(deployment, token, tmp_path):
    deployment.proxy.use(None)

    result = stateful_phase(deployment.url, token, tmp_path)

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "✅ Stateful" in output, output


def test_stock_schemathesis_finds_st301_on_the_old_design(deployment, token, tmp_path):
    deployment.proxy.use(old_design)

    result = stateful_phase(deployment.url, token, tmp_path)

    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "ST301" in output and "Deleted resource still available" in output, output
