"""Stock Schemathesis finds nothing against our server: its CLI as a newcomer runs it, with every check on,
nothing excluded, only the user id pinned and a token given, against a live `autional-sessions serve`.

Our own suite (contract_tests/) adds to Schemathesis; this proves the server keeps the contract as plain
Schemathesis reads it too, including the checks of sequences (a DELETE followed by a GET of the same
path is "deleted resource still available" to it: revoking the other sessions is a POST for that reason).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from autional_sessions.db.seed import seed
from tests.checkout import checkout_env
from tests.postgres.support import running_server

USER = "usr_0000001"
# Fixed, so that a red run is the same run again; the budget is Schemathesis's default.
SEED = "20261129"


@pytest.mark.slow
def test_stock_schemathesis_with_every_check_finds_nothing(database, database_url, make_token, tmp_path):
    seed(database, 3, 25)
    token = make_token(USER, exp=int(time.time()) + 3600)
    # What a newcomer writes to pin the path's user, and nothing else: no settings of ours.
    (tmp_path / "schemathesis.toml").write_text(f'[parameters]\n"path.user_id" = "{USER}"\n')

    command = [str(Path(sys.executable).with_name("schemathesis")), "run", "--checks", "all", "--seed", SEED]

    with running_server(database_url, tmp_path / "server.log") as server:
        result = subprocess.run(
            [*command, "-H", f"Authorization: Bearer {token}", f"{server.url}/openapi.json"],
            cwd=tmp_path,
            env=checkout_env(NO_COLOR="1"),
            capture_output=True,
            text=True,
            timeout=600,
        )

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Failures:" not in output, output
    # Every operation, and the stateful phase that follows the links (list, revoke, list again), ran.
    assert "Tested: 5" in output, output
    assert "✅ Stateful" in output, output
