"""The tests' subprocesses (servers, the contract-test command) run this checkout's code, not whatever copy
of the package happens to be installed in the environment that runs the tests."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def checkout_env(base: Mapping[str, str] | None = None, **overrides: str) -> dict[str, str]:
    """`base` (default: this process's environment) with the checkout first on PYTHONPATH, ahead of
    site-packages and of any PYTHONPATH entry already there."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(overrides)
    return env
