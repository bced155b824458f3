"""The list query reads through its index whatever the table size: neither the page nor the count scans
the whole sessions table. Checked with EXPLAIN on a table big enough, and analysed, for the planner's
choice to be a real one (no planner switches turned off)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator

import peewee
import pytest

from autional_sessions.db import queries
from autional_sessions.db.maintenance import open_database
from autional_sessions.db.migrations import migrate
from autional_sessions.db.seed import seed, user_id
from autional_sessions.testing import make_settings, throwaway_database

# Its database is the run's engine's, made by the module's own fixture.
pytestmark = pytest.mark.engine

USERS = 2_500
SESSIONS_PER_USER = 20
NOW = dt.datetime(2026, 11, 1, 12, 0, 0)
LIST_INDEX = "sessions_user_status_activity"


@pytest.fixture(scope="module")
def big_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peewee.Database]:
    with throwaway_database(tmp_path_factory.mktemp("plans")) as url:
        database = open_database(make_settings(url))
        migrate(database)
        seed(database, USERS, SESSIONS_PER_USER, now=NOW)
        with database.connection_context():
            database.execute_sql("ANALYZE")
        yield database
        database.close()


def plan_queries(postgresql: bool) -> dict[str, peewee.Query]:
    someone = user_id(USERS // 2)
    return {
        "first page": queries.page_query(postgresql, someone, NOW, 20, 0),
        "deep page": queries.page_query(postgresql, someone, NOW, 20, 49 * 20),
        "count": queries.count_query(someone, NOW),
    }


def postgres_plan_nodes(database: peewee.Database, query: peewee.Query) -> list[dict]:
    sql, params = query.sql()
    (plan,) = database.execute_sql(f"EXPLAIN (FORMAT JSON) {sql}", params).fetchone()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    nodes, todo = [], [plan[0]["Plan"]]
    while todo:
        node = todo.pop()
        nodes.append(node)
        todo.extend(node.get("Plans", []))
    return nodes


@pytest.mark.slow
@pytest.mark.parametrize("name", ["first page", "deep page", "count"])
def test_the_list_query_reads_the_users_rows_through_the_index(big_database, name):
    query = plan_queries(isinstance(big_database, peewee.PostgresqlDatabase))[name].bind(big_database)
    with big_database.connection_context():
        if isinstance(big_database, peewee.PostgresqlDatabase):
            nodes = postgres_plan_nodes(big_database, query)
            on_sessions = [n for n in nodes if n.get("Relation Name") == "sessions"]
            assert on_sessions, nodes
            assert all(n["Node Type"] != "Seq Scan" for n in on_sessions), nodes
            assert all(n.get("Index Name") == LIST_INDEX for n in on_sessions), nodes
        else:
            sql, params = query.sql()
            (alias,) = re.findall(r'"sessions" AS "(\w+)"', sql)
            details = [row[-1] for row in big_database.execute_sql(f"EXPLAIN QUERY PLAN {sql}", params)]
            on_sessions = [d for d in details if d.split()[1:2] == [alias]]
            assert on_sessions, details
            assert all(d.startswith(f"SEARCH {alias} USING INDEX {LIST_INDEX} (") for d in on_sessions), (
                details
            )
