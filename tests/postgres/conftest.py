"""Fixtures of the deployment tests (PostgreSQL in production; each test runs on the engine of the run)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from autional_sessions.testing import throwaway_database


@pytest.fixture
def fresh_database_url(tmp_path: Path) -> Iterator[str]:
    """An empty database of its own for one test, on the engine of this run."""
    with throwaway_database(tmp_path) as url:
        yield url
