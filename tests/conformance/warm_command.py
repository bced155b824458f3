"""`autional-sessions contract-test`, run many times at the cost of its imports once.

Each run of the command spends most of its time importing pytest, Hypothesis and Schemathesis. Here one
process, started with the checkout on its path (as `python -m autional_sessions` would be), imports them
once; each run is a child forked from it that calls the command's own `main` with its arguments, working
directory and environment, its output going to a file. Imported first is only what the command imports
before pytest starts, or as pytest starts (its plugins), so every run collects the suite afresh, as the
command does.

The parent reads one JSON line a run on stdin ({"argv", "env", "cwd", "out"}) and answers with two lines:
the child's pid, then its exit status.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

# What `contract-test --url` imports before it runs a check: the command line, pytest and the plugins it
# loads from their entry points, and the libraries of the checks.
PRELOAD = (
    "autional_sessions.cli",
    "autional_sessions.contract_command",
    "pytest",
    "_hypothesis_pytestplugin",
    "pytest_timeout",
    "anyio.pytest_plugin",
    "schemathesis",
    "schemathesis.pytest.plugin",
    "hypothesis",
    "httpx",
    "jwt",
)


def serve() -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    print("ready", flush=True)
    for line in sys.stdin:
        run = json.loads(line)
        child = os.fork()
        if child == 0:
            _child(run)
        print(child, flush=True)
        _, status = os.waitpid(child, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)


def _child(run: dict) -> None:
    code = 70  # EX_SOFTWARE: the run itself broke
    try:
        os.chdir(run["cwd"])
        os.environ.clear()
        os.environ.update(run["env"])
        with open(run["out"], "wb") as out:
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        from autional_sessions.cli import main

        code = main(run["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    serve()
