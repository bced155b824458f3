"""The import contracts of pyproject.toml ([tool.importlinter]), checked by import-linter: `make lint` and
`make test` run `python -m tests.import_contracts`.

import-linter reads a package from its folder, and in a checkout `handlers/`, `db/` and `contract_tests/`
are beside `autional_sessions/`, not in it. So the package is checked as the wheel ships it: copied, with
the three folders inside it (as hatchling's force-include puts them), into a scratch directory that comes
first on sys.path while import-linter runs.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from pathlib import Path

from importlinter.cli import lint_imports

from tests.checkout import REPO

SHIPPED_FOLDERS = ("db", "handlers", "contract_tests")


def shipped_layout(into: Path) -> Path:
    """The package's Python code, laid out as in the wheel, under `into`."""
    package = into / "autional_sessions"
    ignore = shutil.ignore_patterns("__pycache__", "locale")
    shutil.copytree(REPO / "autional_sessions", package, ignore=ignore)
    for folder in SHIPPED_FOLDERS:
        shutil.copytree(REPO / folder, package / folder, ignore=ignore)
    return into


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="autional-imports-") as scratch:
        sys.path.insert(0, str(shipped_layout(Path(scratch))))
        # import-linter puts the working directory first on sys.path: there, the copy.
        with contextlib.chdir(scratch):
            return lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True, no_logo=True)


if __name__ == "__main__":
    raise SystemExit(main())
