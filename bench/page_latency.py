"""Page latency against table size, and deep pages of a user with many sessions, on PostgreSQL.

Not a test and not run in CI: a measurement to run by hand on a quiet machine.

    .venv/bin/python bench/page_latency.py --rounds 400

It makes (or reuses, when they already hold the expected rows) two databases on the server named by
--admin-url: a small one (500 users x 20 sessions = 10,000) and a large one (50,000 x 20 = 1,000,000,
plus one user with --heavy-sessions sessions). Then it measures, interleaved in one run (A, B, A, B,
...) so that the noise of a shared machine falls on both sides alike:

- `query`: `db.queries.find_active_sessions` in this process, the statement and its round trip;
- `http`: GET /sessions/user/{id}/sessions through `autional-sessions serve`, one server per database;

for page 1 of ordinary users of each database, and for pages 1 to the last of the heavy user. The
output is one JSON document: medians and 90th percentiles in milliseconds, and the ratios of medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autional_sessions.config import Settings  # noqa: E402
from autional_sessions.db.clock import utc_now  # noqa: E402
from autional_sessions.db.maintenance import open_database  # noqa: E402
from autional_sessions.db.migrations import migrate  # noqa: E402
from autional_sessions.db.queries import SessionQueries  # noqa: E402
from autional_sessions.db.seed import seed, user_id  # noqa: E402
from autional_sessions.db.store import open_store  # noqa: E402
from autional_sessions.security.bearer_auth import TokenVerifier  # noqa: E402
from autional_sessions.testing import free_port  # noqa: E402

SECRET = "page-latency-bench-secret-0123456789abcdef"
SESSIONS_PER_USER = 20
PAGE_SIZE = 20
# Fetches one page: (side, user id, page number).
Fetch = Callable[[str, str, int], None]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--small-users", type=int, default=500)
    parser.add_argument("--large-users", type=int, default=50_000)
    parser.add_argument("--heavy-sessions", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=400, help="measurements per case and side")
    args = parser.parse_args()

    base = args.admin_url.rsplit("/", 1)[0]
    small_url = prepare(args.admin_url, f"{base}/autional_bench_10k", args.small_users, 0)
    large_url = prepare(args.admin_url, f"{base}/autional_bench_1m", args.large_users, args.heavy_sessions)
    heavy = user_id(args.large_users)
    heavy_active = args.heavy_sessions * 4 // 5  # seed: every fifth session cannot be listed
    last_page = -(-heavy_active // PAGE_SIZE)
    deep_pages = sorted({1, 10, last_page // 2, last_page})

    rnd = random.Random(2026)
    ordinary = {
        "small": [user_id(rnd.randrange(args.small_users)) for _ in range(args.rounds)],
        "large": [user_id(rnd.randrange(args.large_users)) for _ in range(args.rounds)],
    }
    report: dict = {
        "sessions": {"small": args.small_users * SESSIONS_PER_USER, "large": count_sessions(large_url)},
        "heavy_user": {"id": heavy, "active_sessions": heavy_active, "pages": deep_pages},
        "rounds": args.rounds,
    }

    # In process: the query alone, on the request path's store, one per database, on one event loop.
    # The heavy user's pages go to a server of their own, so that the small and the large server see the
    # same traffic (a busier process stays warmer and answers faster).
    sides = {"small": small_url, "large": large_url, "heavy": large_url}
    loop = asyncio.new_event_loop()
    stores = {side: open_store(settings(url)) for side, url in sides.items()}
    fetcher = query_fetcher(loop, {side: SessionQueries(store) for side, store in stores.items()})
    report["query"] = measure(fetcher, ordinary, heavy, deep_pages, args.rounds)
    for store in stores.values():
        loop.run_until_complete(store.close())
    loop.close()

    servers = {side: start_server(url) for side, url in sides.items()}
    clients = {side: httpx.Client(base_url=base, timeout=30) for side, (_, base) in servers.items()}
    try:
        report["http"] = measure(
            http_fetcher(clients, {heavy, *ordinary["small"], *ordinary["large"]}),
            ordinary,
            heavy,
            deep_pages,
            args.rounds,
        )
    finally:
        for client in clients.values():
            client.close()
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=15)
    print(json.dumps(report, indent=2))
    return 0


def settings(url: str) -> Settings:
    return Settings(database_url=url, jwt_secret=SECRET, db_pool_size=4)


def prepare(admin_url: str, url: str, users: int, heavy_sessions: int) -> str:
    """Create, migrate and seed the database unless it already holds exactly the expected rows."""
    name = url.rsplit("/", 1)[1]
    admin = psycopg.connect(admin_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    database = open_database(settings(url))
    migrate(database)
    heavy = user_id(users)
    total, heavy_now = count_sessions(url), count_sessions(url, heavy)
    started = time.monotonic()
    if total - heavy_now != users * SESSIONS_PER_USER:
        seed(database, users, SESSIONS_PER_USER, progress=progress)
    if heavy_now != heavy_sessions:
        seed(database, 1, heavy_sessions, first_user=users)
    print(f"{name}: ready in {time.monotonic() - started:.1f}s", file=sys.stderr)
    with database.connection_context():
        database.execute_sql("ANALYZE")
    database.close()
    return url


def progress(done: int, total: int) -> None:
    print(f"\rseeded {done:,}/{total:,} sessions", end="", file=sys.stderr, flush=True)


def count_sessions(url: str, user: str | None = None) -> int:
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        if user is None:
            cur.execute("SELECT count(*) FROM sessions")
        else:
            cur.execute("SELECT count(*) FROM sessions WHERE user_id = %s", (user,))
        return cur.fetchone()[0]


def interleaved(cases: dict[str, Callable[[int], None]], rounds: int) -> dict[str, list[float]]:
    """Run every case once per round, in an order that rotates each round; milliseconds per call."""
    names = list(cases)
    timings: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm caches and connections, unmeasured
        cases[name](0)
    for i in range(rounds):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            cases[name](i)
            timings[name].append((time.perf_counter() - started) * 1000)
    return timings


def summary(timings: dict[str, list[float]], ratios: dict[str, tuple[str, str]]) -> dict:
    medians = {name: statistics.median(values) for name, values in timings.items()}
    return {
        "median_ms": {name: round(m, 3) for name, m in medians.items()},
        "p90_ms": {name: round(statistics.quantiles(v, n=10)[-1], 3) for name, v in timings.items()},
        "ratios": {label: round(medians[a] / medians[b], 3) for label, (a, b) in ratios.items()},
    }


def ratio_labels(deep_pages: list[int]) -> dict[str, tuple[str, str]]:
    labels = {"page 1 at 1M / page 1 at 10k": ("page 1, 1M sessions", "page 1, 10k sessions")}
    for page in deep_pages[1:]:
        labels[f"heavy user page {page} / page 1"] = (f"heavy user page {page}", "heavy user page 1")
    labels["heavy user page 1 / ordinary user page 1 (1M)"] = ("heavy user page 1", "page 1, 1M sessions")
    return labels


def measure(fetch: Fetch, ordinary, heavy: str, deep_pages: list[int], rounds: int) -> dict:
    """Page 1 of ordinary users on each side, and the heavy user's pages, interleaved."""

    def case(side: str, who: Callable[[int], str], page: int) -> Callable[[int], None]:
        return lambda i: fetch(side, who(i), page)

    cases = {
        "page 1, 10k sessions": case("small", lambda i: ordinary["small"][i], 1),
        "page 1, 1M sessions": case("large", lambda i: ordinary["large"][i], 1),
    }
    for page in deep_pages:
        cases[f"heavy user page {page}"] = case("heavy", lambda i: heavy, page)
    return summary(interleaved(cases, rounds), ratio_labels(deep_pages))


def query_fetcher(loop: asyncio.AbstractEventLoop, queries: dict[str, SessionQueries]) -> Fetch:
    def fetch(side: str, user: str, page: int) -> None:
        found = loop.run_until_complete(queries[side].find_active_sessions(user, utc_now(), page, PAGE_SIZE))
        assert found is not None and found.items, (side, user, page)

    return fetch


def http_fetcher(clients: dict[str, httpx.Client], users: set[str]) -> Fetch:
    # Minted beforehand, so that signing is not timed.
    verifier = TokenVerifier(settings("sqlite:///unused.db"))
    tokens = {user: verifier.issue(user, 3600, int(time.time())) for user in users}

    def fetch(side: str, user: str, page: int) -> None:
        response = clients[side].get(
            f"/sessions/user/{user}/sessions",
            params={"page": page, "page_size": PAGE_SIZE},
            headers={"Authorization": f"Bearer {tokens[user]}"},
        )
        assert response.status_code == 200 and response.json()["items"], response.text

    return fetch


def start_server(url: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "AUTIONAL_DATABASE_URL": url, "AUTIONAL_JWT_SECRET": SECRET}
    process = subprocess.Popen(
        [sys.executable, "-m", "autional_sessions", "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/openapi.json", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.1)
    process.terminate()
    raise SystemExit(f"server for {url} did not start")


if __name__ == "__main__":
    raise SystemExit(main())
