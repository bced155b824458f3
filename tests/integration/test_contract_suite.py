"""The conformance suite run as its users run it, in process: every check passes on our server, and a part
of it run on its own says so."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from contract_tests.catalogue import CHECKS
from tests.checkout import REPO, checkout_env


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=checkout_env(**env), capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_every_check_but_the_schema_passes_in_process(tmp_path):
    """Every hand-written check runs in process (with the test key, on the seeded data) and passes; the
    schema's own run is `make test`'s contract_tests/test_contract.py."""
    report = tmp_path / "report.json"
    result = run(
        ["-m", "autional_sessions", "contract-test", "--select", "[!s]*", "--report-json", str(report)],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    outcomes = {
        check["id"]: (check["outcome"], check["reason"]) for check in json.loads(report.read_text())["checks"]
    }
    assert outcomes == {
        check.id: ("SKIPPED", "not selected") if check.id == "schema" else ("PASSED", "") for check in CHECKS
    }
    # The terminal report lists every check.
    for check in CHECKS:
        assert check.id in result.stdout


@pytest.mark.slow
def test_one_schema_test_run_by_its_node_id_passes_without_the_whole_runs_gate(tmp_path):
    """A part of the schema tests run alone (here by node id) is judged by itself: the gate that every
    documented status was produced belongs to a whole run."""
    result = run(
        [
            "-m",
            "pytest",
            "contract_tests/test_contract.py::test_link_sequences_keep_the_contract",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=REPO,
        CONTRACT_MAX_EXAMPLES="5",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_a_select_glob_that_names_no_check_is_refused(tmp_path):
    result = run(["-m", "autional_sessions", "contract-test", "--select", "tokens.*"], cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--select matches no check: tokens.*" in result.stdout + result.stderr
