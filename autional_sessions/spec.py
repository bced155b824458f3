"""Finding and loading openapi.yaml, the contract everything else is built from."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

_PACKAGE_DIR = Path(__file__).resolve().parent


def project_file(name: str) -> Path:
    """A file kept at the repository root (a checkout or editable install), else its packaged copy."""
    for candidate in (_PACKAGE_DIR.parent / name, _PACKAGE_DIR / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{name} is neither at the repository root nor packaged with autional_sessions")


def spec_path() -> Path:
    return project_file("openapi.yaml")


@functools.cache
def _load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_spec() -> dict[str, Any]:
    """The parsed spec. Callers must not mutate it: it is read once per process and shared."""
    return _load(spec_path())
