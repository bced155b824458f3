"""The project's tests run on the fixtures of the package's shipped test support (autional_sessions/testing.py),
which the contract suite uses too when it runs in process from an install.

`make test` runs every test on SQLite, then on PostgreSQL again only those marked `engine`, which depend on
the engine: here, the tests using a database of the run (the `database_url` or `fresh_database_url`
fixture, directly or through another such as `app`), the in-process contract suite, and the tests that
only run on PostgreSQL (`postgres_only`); in their own module, any other. The rest (pure code, the wheel,
the browser, lint) run once.
"""

from __future__ import annotations

import pytest

pytest_plugins = ("autional_sessions.testing",)

ENGINE_FIXTURES = frozenset({"database_url", "fresh_database_url"})
# In process, the contract suite's target runs on a database of the run.
CONTRACT_SUITE = "contract_tests/"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    from tests.postgres.support import postgres_only

    for item in items:
        uses_database = ENGINE_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        in_contract_suite = item.nodeid.startswith(CONTRACT_SUITE)
        if uses_database or in_contract_suite or postgres_only.mark in item.iter_markers("skipif"):
            item.add_marker(pytest.mark.engine)
