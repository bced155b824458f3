"""The repository's layout: every module has one import name, and git tracks no symlink (a checkout without
symlink support, as Git for Windows makes by default, must work)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.checkout import REPO, checkout_env

FOLDERS = ("db", "handlers")
# The project's Python code (not the venv's, whose own aliases, say `py.path`, are not ours to judge).
CODE = ("autional_sessions", "db", "handlers", "contract_tests", "tests", "bench", "conftest.py")


@pytest.mark.parametrize("folder", FOLDERS)
def test_a_top_level_folder_imports_under_the_package_name_only(folder):
    module = importlib.import_module(f"autional_sessions.{folder}")

    assert Path(module.__file__).parent == REPO / folder
    assert str(REPO) in sys.path  # so `import db` would find the folder, and must refuse
    with pytest.raises(ImportError, match=f"import autional_sessions.{folder}"):
        importlib.import_module(folder)
    assert folder not in sys.modules


def test_the_data_layer_has_one_database_proxy():
    # The defect of two names: `db.models.database_proxy is autional_sessions.db.models.database_proxy`
    # was False, and a database initialised through one name was not the other's.
    from autional_sessions.db import models

    assert sys.modules["autional_sessions.db.models"].database_proxy is models.database_proxy
    assert "db.models" not in sys.modules


def test_no_file_of_the_project_is_loaded_under_two_module_names():
    # Whatever this test session has imported so far (pytest collected every test module and conftest.py
    # before running any test), plus the whole server.
    importlib.import_module("autional_sessions.http.app")
    names_by_file: dict[Path, list[str]] = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if (
            file
            and Path(file).resolve().is_relative_to(REPO)
            and Path(file).resolve().relative_to(REPO).parts[0] in CODE
        ):
            names_by_file.setdefault(Path(file).resolve(), []).append(name)

    assert {file: names for file, names in names_by_file.items() if len(names) > 1} == {}


@pytest.mark.slow
def test_the_contract_suite_is_found_from_a_fresh_interpreter_in_the_checkout():
    # As `autional-sessions contract-test` finds it, with the checkout first on the path.
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "import importlib.util; "
            "print(*importlib.util.find_spec('autional_sessions.contract_tests').submodule_search_locations)",
        ],
        env=checkout_env(),
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    )

    assert Path(found.stdout.strip()) == REPO / "contract_tests"


def test_git_tracks_no_symlink():
    listing = subprocess.run(
        ["git", "ls-files", "--stage"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    # Mode 120000 is a symlink in git's index.
    assert [line.split("\t")[1] for line in listing.splitlines() if line.startswith("120000 ")] == []


@pytest.mark.slow
def test_importing_the_package_leaves_the_warning_filters_alone():
    # The package is installed into users' test environments (the contract suite): their warning filters
    # are theirs. The server's own notice is silenced in `serve`'s processes only.
    code = (
        "import warnings; before = list(warnings.filters); "
        "import autional_sessions, autional_sessions.config, autional_sessions.spec; "
        "print(warnings.filters == before); "
        "import autional_sessions.http.app; "
        "print([f[1].pattern for f in warnings.filters if f not in before and f[1] is not None])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=checkout_env(), capture_output=True, text=True, check=True
    )

    assert done.stdout.splitlines() == ["True", "[]"]
