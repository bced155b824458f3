"""The bench's scripts (bench/*.py), imported by the tests that check them, each under one module name.

The scripts import each other as they run, from their own directory (`from compare import ...`): compare.py
is `compare` here too, so that it is loaded once. A script whose name is a module of the standard library
(profile.py) gets a name of its own, `bench_<name>`, and the bench directory is never left on sys.path.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from tests.checkout import REPO

BENCH = REPO / "bench"


def bench_script(name: str) -> ModuleType:
    """bench/<name>.py, loaded once in a test session."""
    module_name = "compare" if name == "compare" else f"bench_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    if name != "compare":
        bench_script("compare")  # what the other scripts import by that name
    spec = importlib.util.spec_from_file_location(module_name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
