"""Finding and loading openapi.yaml, the contract everything else is built from."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from autional_sessions import CHECKOUT

_PACKAGE_DIR = Path(__file__).resolve().parent
# The keys of an OpenAPI path item that are operations (the others are parameters, summary, ...).
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


# Where the spec keeps its catalogue of problem types: their names, statuses, codes and titles.
PROBLEM_TYPES_PATH = ("components", "schemas", "dto.Problem", "x-problem-types")


def problem_types(spec: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    """The spec's problem types by name (`x-problem-types`)."""
    node: Any = spec
    for key in PROBLEM_TYPES_PATH:
        node = node[key]
    return node


def project_file(name: str) -> Path:
    """A file shipped inside the package, and only there: nothing lying beside an installed package (say a
    stray openapi.yaml in site-packages) can stand in for the contract. In a checkout, the file at the
    repository's top, where the wheel's build takes it from (pyproject.toml, `force-include`)."""
    path = (CHECKOUT or _PACKAGE_DIR) / name
    if not path.is_file():
        raise FileNotFoundError(f"{name} is not packaged with autional_sessions")
    return path


def spec_path() -> Path:
    return project_file("openapi.yaml")


@functools.cache
def _load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_spec() -> dict[str, Any]:
    """The parsed spec. Callers must not mutate it: it is read once per process and shared."""
    return _load(spec_path())
