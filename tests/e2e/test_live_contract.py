"""`autional-sessions contract-test` passes against our own server and fails against one that breaks the
contract, with a curl line that reproduces the failure."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from autional_sessions.db.seed import seed
from autional_sessions.http.app import create_app
from autional_sessions.testing import TEST_AUDIENCE, TEST_ISSUER, TEST_SECRET
from contract_tests.catalogue import CHECKS
from tests.checkout import checkout_env
from tests.postgres.support import running_server, serving

USER = "usr_0000001"
OTHER_USER = "usr_0000002"
# A small budget: these tests prove the command's verdict, the in-process suite proves the server.
MAX_EXAMPLES = "40"


def contract_test(
    url: str,
    token: str | None,
    junit: Path,
    cwd: Path,
    *,
    token_in_env: bool = False,
    options: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """The command as a CI job runs it: the token on the command line, or in AUTIONAL_CONTRACT_TOKEN."""
    command = [sys.executable, "-m", "autional_sessions", "contract-test", "--url", url, *options]
    command += ["--user-id", USER, "--junit-xml", str(junit), "--max-examples", MAX_EXAMPLES]
    command += ["--report-json", str(junit.with_suffix(".json"))]
    env = checkout_env({k: v for k, v in os.environ.items() if not k.startswith("AUTIONAL_CONTRACT_")})
    if token is not None and token_in_env:
        env["AUTIONAL_CONTRACT_TOKEN"] = token
    elif token is not None:
        command += ["--token", token]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def junit_counts(path: Path) -> dict[str, int]:
    suite = ET.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    return {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors")}


def outcomes(path: Path) -> dict[str, str]:
    """Each check's outcome in the JSON report."""
    return {check["id"]: check["outcome"] for check in json.loads(path.read_text())["checks"]}


class DropsTotal:
    """Our app, broken on purpose: a list's 200 loses `total`, which dto.SessionListResponse requires."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message = {}
        body = bytearray()

        async def rewrite(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            data = bytes(body)
            if start["status"] == 200 and data:
                document = json.loads(data)
                if "items" in document:  # a list: the revocation's 200 has no total to lose
                    document.pop("total")
                    data = json.dumps(document).encode()
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(data)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": data})

        await self.app(scope, receive, rewrite)


@pytest.fixture
def token(database, make_token) -> str:
    """A seeded database with USER among its users, and an hour-long token for USER."""
    seed(database, 3, 25)
    return make_token(USER, exp=int(time.time()) + 3600)


@pytest.mark.slow
def test_contract_test_passes_against_our_own_server(token, database_url, tmp_path):
    junit = tmp_path / "contract.xml"
    with running_server(database_url, tmp_path / "server.log") as server:
        result = contract_test(server.url, token, junit, cwd=tmp_path, token_in_env=True)

    assert result.returncode == 0, result.stdout + result.stderr
    # One test case per check of the catalogue, none failed.
    assert junit_counts(junit) == {"tests": len(CHECKS), "failures": 0, "errors": 0}
    # With one token, what needs no key passes (or skips, saying why).
    assert outcomes(junit.with_suffix(".json"))["schema"] == "PASSED"
    # The status table: a row per (operation, status) with the number of responses validated.
    seen = {
        int(status) for status in re.findall(r"^GET \S+ +(\d{3}) +[1-9]\d*$", result.stdout, re.MULTILINE)
    }
    assert seen >= {200, 400, 401, 403}, result.stdout


@pytest.mark.slow
def test_every_check_passes_against_our_own_server_given_the_key_and_a_second_user(
    token, database_url, tmp_path
):
    """With the signing key (the suite mints its tokens: expired, for other users, with a sid) and a second
    user, every check runs and passes; only the Retry-After check has nothing to judge, as the server has
    no rate limit (in process it judges a 429 and a 503). The schema check, which needs neither, is the
    test above's."""
    key = tmp_path / "signing-key"
    key.write_text(TEST_SECRET + "\n")
    junit = tmp_path / "contract.xml"
    options = ("--signing-key-file", str(key), "--issuer", TEST_ISSUER, "--audience", TEST_AUDIENCE)
    options += ("--other-user-id", OTHER_USER, "--select", "[!s]*")
    with running_server(database_url, tmp_path / "server.log") as server:
        result = contract_test(server.url, None, junit, cwd=tmp_path, options=options)

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(junit.with_suffix(".json").read_text())["checks"]
    skipped = {"headers.retry-after", "schema"}
    assert {c["id"]: c["outcome"] for c in report} == {
        check.id: "SKIPPED" if check.id in skipped else "PASSED" for check in CHECKS
    }, result.stdout
    assert "no 429 or 503" in next(c["reason"] for c in report if c["id"] == "headers.retry-after")


@pytest.mark.slow
def test_contract_test_fails_with_a_curl_line_against_a_server_that_breaks_the_contract(
    token, settings, tmp_path
):
    junit = tmp_path / "contract.xml"
    with serving(DropsTotal(create_app(settings))) as url:
        result = contract_test(url, token, junit, cwd=tmp_path)

    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    # A curl line for the failing case, its token filtered (other headers, generated, may come with it).
    assert re.search(
        rf"curl -X GET (-H \S+ .*)?-H 'Authorization: \[Filtered\]' .*'{re.escape(url)}/sessions/user/",
        output,
    ), output
    assert '"total" is a required property' in output
    # No 200 passed validation, so the status gate fails too.
    assert "documented but never produced and validated: GET /sessions/user/{user_id}/sessions 200" in output
    # The schema check fails (the list's test, the stateful one and the gate).
    assert outcomes(junit.with_suffix(".json"))["schema"] == "FAILED"
