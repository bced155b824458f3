"""Throughput of this project's server against the hand-written yardstick, side by side in one run.

The yardstick, ../shared/bench/reference_server.py, does the endpoint's work (JWT check, user lookup, count
and page of active sessions, JSON envelope) with no framework, spec or ORM. Both servers get the same data
(2,000 users x 25 sessions, 4 in 5 listable), JWT secret, issuer and audience, and the project's venv
Python (so both run uvicorn on httptools and uvloop). ../shared/bench/loadgen.py (wrk, a random user and
its own token per request) drives them interleaved, round by round; the machine is shared and noisy, so
what counts is the ratio of the medians, not an absolute figure. At 256 connections any non-2xx answer or
socket error of the project's fails the run. The pg-* cases use two throw-away databases on the server named by
AUTIONAL_BENCH_POSTGRES_URL (default: postgres@127.0.0.1:5432) and drop them at the end.

    make bench
    make bench BENCH_ARGS='--cases sqlite-20 --rounds 5'
    .venv/bin/python bench/compare.py --cases pg-1,pg-2 --json bench.json

The table goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import jwt
import psycopg

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "bench"
BIN = ROOT / ".venv" / "bin"
# The yardstick has these built in; the project is configured to match them.
SECRET = "reference-bench-secret-0123456789abcdef"
ISSUER, AUDIENCE = "bench-issuer", "bench-audience"
JWT_ENV = {"AUTIONAL_JWT_SECRET": SECRET, "AUTIONAL_JWT_ISSUER": ISSUER, "AUTIONAL_JWT_AUDIENCE": AUDIENCE}
USERS, SESSIONS = 2000, 25
USER_FORMAT = "usr_{:07d}"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# A wrk result as loadgen prints it: rps, p50_ms, p99_ms, requests, non_2xx, socket_errors.
Round = dict[str, float]


@dataclass(frozen=True)
class Case:
    name: str
    engine: str  # "sqlite" or "postgresql"
    workers: int  # the project's; the yardstick is always one process
    page_size: int
    connections: int

    @property
    def query(self) -> str:
        return f"page=1&page_size={self.page_size}"

    @property
    def strict(self) -> bool:
        """At high concurrency the point is that nothing fails, not only how fast it goes."""
        return self.connections >= 256


CASES = {
    case.name: case
    for case in (
        Case("sqlite-20", "sqlite", 1, 20, 32),
        Case("sqlite-100", "sqlite", 1, 100, 32),
        Case("sqlite-20-c256", "sqlite", 1, 20, 256),
        Case("pg-1", "postgresql", 1, 20, 32),
        Case("pg-2", "postgresql", 2, 20, 32),
        Case("pg-1-c256", "postgresql", 1, 20, 256),
    )
}


class BenchError(Exception):
    """A reason to stop the whole run: a server that won't start, a failed load run, a dishonest pair."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def project_env(database_url: str) -> dict[str, str]:
    return {**os.environ, **JWT_ENV, "AUTIONAL_DATABASE_URL": database_url}


class Bench:
    """Databases and servers, made on first use and reused by every case with the same configuration."""

    def __init__(self, tmp: Path, admin_url: str) -> None:
        self.tmp = tmp
        self.admin_url = admin_url
        self.processes: list[subprocess.Popen] = []
        self.pg_databases: list[str] = []
        self.databases: dict[str, tuple[str, str]] = {}  # engine -> (project URL, yardstick --db)
        self.servers: dict[tuple[str, str, int], str] = {}  # (side, engine, workers) -> base URL

    def database(self, engine: str) -> tuple[str, str]:
        if engine not in self.databases:
            if engine == "sqlite":
                project, ref = f"sqlite:///{self.tmp}/project.db", str(self.tmp / "ref.db")
            else:
                prefix = f"autional_bench_{secrets.token_hex(4)}"
                project, ref = self.create_pg(f"{prefix}_project"), self.create_pg(f"{prefix}_ref")
            log(f"seeding the project's {engine} database ({USERS} users x {SESSIONS} sessions)")
            seed = ["seed", "--users", str(USERS), "--sessions-per-user", str(SESSIONS)]
            for command in (["migrate"], seed):
                # stdout to stderr too: stdout is kept for the table.
                cli = [str(BIN / "autional-sessions"), *command]
                subprocess.run(cli, env=project_env(project), stdout=sys.stderr, check=True)
            self.databases[engine] = (project, ref)  # the yardstick seeds its own as it starts
        return self.databases[engine]

    def create_pg(self, name: str) -> str:
        try:
            admin = psycopg.connect(self.admin_url)
        except psycopg.OperationalError as exc:
            raise BenchError(
                f"PostgreSQL is needed for the pg-* cases and is not reachable ({str(exc).strip()}); "
                "set AUTIONAL_BENCH_POSTGRES_URL, or pick SQLite cases with --cases"
            ) from exc
        admin.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        self.pg_databases.append(name)  # before creating, so that a half-done run still drops it
        with contextlib.closing(admin), admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        return urlsplit(self.admin_url)._replace(path=f"/{name}").geturl()

    def project(self, engine: str, workers: int) -> str:
        key = ("project", engine, workers)
        if key not in self.servers:
            port = free_port()
            argv = ["serve", "--port", str(port), "--workers", str(workers), "--log-level", "warning"]
            env = project_env(self.database(engine)[0])
            self.servers[key] = self.start([str(BIN / "autional-sessions"), *argv], port, env)
        return self.servers[key]

    def yardstick(self, engine: str) -> str:
        key = ("yardstick", engine, 1)
        if key not in self.servers:
            port, ref = free_port(), self.database(engine)[1]
            argv = [str(BIN / "python"), str(SHARED / "reference_server.py"), "--db", ref]
            argv += ["--users", str(USERS), "--sessions", str(SESSIONS), "--port", str(port)]
            self.servers[key] = self.start(argv, port, dict(os.environ))
        return self.servers[key]

    def start(self, argv: list[str], port: int, env: dict[str, str]) -> str:
        log(f"starting {' '.join(argv[:2])} on port {port}")
        # A process group of its own: `--workers 2` forks children, and stopping the group stops them all.
        process = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=sys.stderr, start_new_session=True)
        self.processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300  # the yardstick seeds PostgreSQL row by row before it listens
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BenchError(f"{' '.join(argv[:2])} exited with {process.returncode} before it answered")
            with contextlib.suppress(httpx.TransportError):
                httpx.get(url, timeout=1)  # any answer, even a 404, means it listens
                return url
            time.sleep(0.2)
        raise BenchError(f"{' '.join(argv[:2])} did not answer on port {port} within 300 s")

    def close(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if not self.pg_databases:
            return
        try:
            admin = psycopg.connect(self.admin_url)
            admin.autocommit = True
            with contextlib.closing(admin), admin.cursor() as cur:
                for name in self.pg_databases:
                    # A leftover connection (a worker that outlived its group) would block the DROP.
                    terminate = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"
                    cur.execute(terminate, (name,))
                    cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
            log(f"dropped {', '.join(self.pg_databases)}")
        except psycopg.Error as exc:
            log(f"could not drop {', '.join(self.pg_databases)}: {exc}")


def honesty_check(case: Case, urls: dict[str, str]) -> None:
    """Both servers must do the same work for the case, or the ratio compares unlike things."""
    user, now = USER_FORMAT.format(42), int(time.time())
    claims = {"sub": user, "iat": now, "exp": now + 600, "iss": ISSUER, "aud": AUDIENCE}
    headers = {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}
    seen: dict[str, tuple[int, int]] = {}
    for side, url in urls.items():
        response = httpx.get(f"{url}/sessions/user/{user}/sessions?{case.query}", headers=headers, timeout=10)
        if response.status_code != 200:
            raise BenchError(
                f"honesty check, {case.name}: {side} said {response.status_code} {response.text}"
            )
        body = response.json()
        seen[side] = (len(body["items"]), body["total"])
    if seen["project"] != seen["yardstick"]:
        raise BenchError(
            f"honesty check, {case.name}: for {user} the project returned {seen['project'][0]} items of "
            f"{seen['project'][1]}, the yardstick {seen['yardstick'][0]} of {seen['yardstick'][1]}"
        )
    log(f"[{case.name}] honesty check: both return {seen['project'][0]} items of {seen['project'][1]}")


def load(url: str, case: Case, seconds: int) -> Round:
    argv = [str(BIN / "python"), str(SHARED / "loadgen.py"), "--url", url, "--secret", SECRET]
    argv += ["--issuer", ISSUER, "--audience", AUDIENCE, "--users", str(USERS), "--user-format", USER_FORMAT]
    argv += ["--query", case.query, "--seconds", str(seconds), "--connections", str(case.connections)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"loadgen against {url} failed ({done.returncode}): {done.stderr.strip()[-1000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_case(bench: Bench, case: Case, rounds: int, seconds: int) -> dict[str, list[Round]]:
    urls = {"project": bench.project(case.engine, case.workers), "yardstick": bench.yardstick(case.engine)}
    honesty_check(case, urls)
    for url in urls.values():  # warm-up, not recorded: pools, caches, lazy imports, every worker forked
        load(url, case, 1)
    runs: dict[str, list[Round]] = {side: [] for side in urls}
    for i in range(rounds):
        # Alternate who goes first, so that a drift in the machine's load favours neither side.
        for side in list(urls) if i % 2 == 0 else list(urls)[::-1]:
            result = load(urls[side], case, seconds)
            runs[side].append(result)
            log(
                f"[{case.name}] round {i + 1}/{rounds} {side:9}: {result['rps']:8.1f} req/s  "
                f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:7.2f} ms  "
                f"errors {result['non_2xx'] + result['socket_errors']}"
            )
    return runs


def median(runs: list[Round], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def report(results: dict[str, dict[str, list[Round]]]) -> tuple[str, bool]:
    """The Markdown table, and whether the project saw an error in any 256-connection case.

    Errors are counted per side: only the project's fail the run (the yardstick, a synchronous driver on
    its event loop, sometimes drops connections at 256 on PostgreSQL; that is reported, not judged).
    """
    lines = [
        "| case | project req/s | yardstick req/s | ratio | project p50 ms | project p99 ms "
        "| yardstick p99 ms | p99 ratio | errors (project / yardstick) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    failed = False
    for name, runs in results.items():
        project, ref = runs["project"], runs["yardstick"]
        errors = sum(int(r["non_2xx"] + r["socket_errors"]) for r in project)
        ref_errors = sum(int(r["non_2xx"] + r["socket_errors"]) for r in ref)
        failed |= CASES[name].strict and errors > 0
        rps, ref_rps = median(project, "rps"), median(ref, "rps")
        p99, ref_p99 = median(project, "p99_ms"), median(ref, "p99_ms")
        flag = " FAIL" if CASES[name].strict and errors else ""
        lines.append(
            f"| {name} | {rps:.0f} | {ref_rps:.0f} | {rps / ref_rps:.2f} | {median(project, 'p50_ms'):.2f} "
            f"| {p99:.2f} | {ref_p99:.2f} | {p99 / ref_p99:.2f} | {errors} / {ref_errors}{flag} |"
        )
    if "pg-1" in results and "pg-2" in results:
        scaling = median(results["pg-2"]["project"], "rps") / median(results["pg-1"]["project"], "rps")
        lines.append(f"\npg-2 scaling (project, 2 workers / 1 worker, median req/s): {scaling:.2f}x")
    return "\n".join(lines), failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per case and side")
    parser.add_argument("--seconds", type=int, default=6, help="length of one round")
    parser.add_argument("--json", metavar="PATH", help="also write every round's raw result there")
    args = parser.parse_args()
    unknown = [name for name in args.cases.split(",") if name not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    if args.rounds < 1 or args.seconds < 1:
        parser.error("--rounds and --seconds must be at least 1")
    cases = [CASES[name] for name in args.cases.split(",")]
    # SIGTERM as an exit, so that the `finally` below still stops the servers and drops the databases.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    results: dict[str, dict[str, list[Round]]] = {}
    with tempfile.TemporaryDirectory(prefix="autional-bench-") as tmp:
        bench = Bench(Path(tmp), os.environ.get("AUTIONAL_BENCH_POSTGRES_URL", DEFAULT_ADMIN_URL))
        try:
            for case in cases:
                results[case.name] = run_case(bench, case, args.rounds, args.seconds)
        except (BenchError, subprocess.CalledProcessError) as exc:
            log(f"compare: {exc}")
            return 1
        except KeyboardInterrupt:
            log("compare: interrupted; stopping the servers")
            return 130
        finally:
            bench.close()

    if args.json:
        raw = {name: {"case": asdict(CASES[name]), **runs} for name, runs in results.items()}
        Path(args.json).write_text(json.dumps({"rounds": args.rounds, "seconds": args.seconds, "cases": raw}))
    table, failed = report(results)
    print(table)
    if failed:
        log("compare: the project had errors at 256 connections (see the errors column)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
