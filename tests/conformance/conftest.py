"""One server per module: the real app behind the fault proxy, on the test database, and the conformance
suite run against it as a deployment's CI runs it (`autional-sessions contract-test --url ...`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from autional_sessions.db.seed import DEMO_TENANT, seed
from autional_sessions.http.app import create_app
from autional_sessions.testing import TEST_AUDIENCE, TEST_ISSUER, TEST_SECRET
from tests.checkout import REPO, checkout_env
from tests.conformance import OTHER_USER, USER
from tests.conformance.proxy import FaultProxy
from tests.factories import add_session, utcnow
from tests.postgres.support import READY_SECONDS, serving

USERS, SESSIONS_PER_USER = 3, 25  # 20 active sessions each: pages of 1, a few, the default and the maximum
# Two of A's sessions share their last activity, so that the order's tie-break (id descending) shows.
TIED_SESSIONS = ("sess_tie_a", "sess_tie_b")
RUN_SECONDS = 240  # a run of the suite that takes longer is stopped, and fails its test


@dataclasses.dataclass(frozen=True)
class Deployment:
    url: str
    proxy: FaultProxy


@dataclasses.dataclass(frozen=True)
class SuiteRun:
    result: subprocess.CompletedProcess[str]
    outcomes: dict[str, str]  # check id -> PASSED, FAILED or SKIPPED
    report: dict[str, Any]

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr

    def reason(self, check_id: str) -> str:
        return next(c.get("reason", "") for c in self.report["checks"] if c["id"] == check_id)


@pytest.fixture(scope="module")
def deployment(settings) -> Iterator[Deployment]:
    proxy = FaultProxy(create_app(settings))
    with serving(proxy) as url:
        yield Deployment(url, proxy)


@pytest.fixture
def seeded(database) -> None:
    """Users A and B (and one more) with their demo sessions, four of five active, as seeded afresh."""
    seed(database, USERS, SESSIONS_PER_USER)
    last_active = utcnow() - dt.timedelta(minutes=90)
    for session_id in TIED_SESSIONS:
        add_session(session_id, USER, tenant_id=DEMO_TENANT, last_active_at=last_active)


class WarmCommand:
    """A process that runs the command in children forked from it, its imports paid once
    (tests/conformance/warm_command.py)."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.conformance.warm_command"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            env=checkout_env(),
            cwd=REPO,
        )
        assert self._line(READY_SECONDS) == "ready"

    def run(self, argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
        assert self.process.stdin is not None
        out = cwd / "contract-test.out"
        run = {"argv": argv, "env": env, "cwd": str(cwd), "out": str(out)}
        self.process.stdin.write(json.dumps(run).encode() + b"\n")
        child = int(self._line(READY_SECONDS) or 0)
        status = self._line(RUN_SECONDS)
        if status is None:
            os.kill(child, signal.SIGKILL)
            self._line(READY_SECONDS)
            raise AssertionError(f"contract-test ran over {RUN_SECONDS}s:\n{out.read_text(errors='replace')}")
        return subprocess.CompletedProcess(argv, int(status), out.read_text(errors="replace"), "")

    def _line(self, timeout: float) -> str | None:
        """The next line the process writes, or None after `timeout` seconds without it."""
        assert self.process.stdout is not None
        fd, line = self.process.stdout.fileno(), b""
        deadline = time.monotonic() + timeout
        while not line.endswith(b"\n"):
            if not select.select([fd], [], [], max(deadline - time.monotonic(), 0))[0]:
                return None
            byte = os.read(fd, 1)
            assert byte, f"the warm command's process ended ({self.process.wait()})"
            line += byte
        return line.decode().strip()

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture(scope="session")
def warm_command() -> Iterator[WarmCommand]:
    command = WarmCommand()
    yield command
    command.close()


@pytest.fixture
def run_suite(seeded, make_token, tmp_path, warm_command) -> Callable[..., SuiteRun]:
    """`contract-test --url URL --select GLOB ...` with everything a deployment's CI can give: a token for
    A, a second user B and its token, and the test issuer's key (tokens in the environment, as the README
    advises)."""
    key_file = tmp_path / "signing-key"
    key_file.write_text(TEST_SECRET + "\n")

    def run(url: str, *globs: str, fresh: bool = False) -> SuiteRun:
        """`fresh`: in a process of its own, exactly as a CI job runs the command."""
        report = tmp_path / "report.json"
        report.unlink(missing_ok=True)
        command = ["contract-test", "--url", url]
        command += ["--user-id", USER, "--other-user-id", OTHER_USER, "--report-json", str(report)]
        command += ["--signing-key-file", str(key_file), "--algorithm", "HS256"]
        command += ["--issuer", TEST_ISSUER, "--audience", TEST_AUDIENCE, "--max-examples", "10"]
        for glob in globs:
            command += ["--select", glob]
        expiry = int(time.time()) + 3600
        env = checkout_env(
            {k: v for k, v in os.environ.items() if not k.startswith("AUTIONAL_CONTRACT_")},
            AUTIONAL_CONTRACT_TOKEN=make_token(USER, exp=expiry),
            AUTIONAL_CONTRACT_OTHER_TOKEN=make_token(OTHER_USER, exp=expiry),
        )
        if fresh:
            result = subprocess.run(
                [sys.executable, "-m", "autional_sessions", *command],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=RUN_SECONDS,
            )
        else:
            result = warm_command.run(command, env, tmp_path)
        assert report.exists(), result.stdout + result.stderr
        document = json.loads(report.read_text())
        return SuiteRun(result, {c["id"]: c["outcome"] for c in document["checks"]}, document)

    return run
