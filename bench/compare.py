"""Throughput of this project's server against the hand-written yardstick and a raw ASGI floor, side by side.

Three servers do the same work on the same data (2,000 users x 25 sessions, 4 in 5 listable), with the
same JWT secret, issuer and audience, on the project's venv Python (uvicorn on httptools and uvloop):

- the project, in one or more configurations (`CONFIGS`): by default its production configuration, the
  access log at `info`, rate limits per token subject and per client address, metrics, and every request
  validated against the spec; other configurations leave one feature out, to measure what it costs;
- the yardstick, ../shared/bench/reference_server.py: the endpoint's work (JWT check, user lookup, count
  and page of active sessions, JSON envelope) in a plain Starlette handler, with no spec or ORM;
- the floor, bench/floor_server.py: the yardstick's work as one raw ASGI function with PyJWT, sqlite3 on
  the event loop (an asyncpg pool on PostgreSQL) and orjson: what Python can do here.

../shared/bench/loadgen.py (wrk, a random user and its own token per request) drives them interleaved,
round by round, every server of a case in each round; the machine is shared and noisy, so what counts is
the ratio of the medians, not an absolute figure. At 256 connections any non-2xx answer or socket error
of the project's fails the run. The pg-* cases use two throw-away databases on the server named by
AUTIONAL_BENCH_POSTGRES_URL (default: postgres@127.0.0.1:5432) and drop them at the end; the `redis`
configuration counts its rate limits in the Redis of AUTIONAL_BENCH_REDIS_URL (default:
redis://127.0.0.1:6379/0). Each server's output (the project's access log) goes to a file of the run's
temporary directory.

    make bench
    make bench BENCH_ARGS='--cases sqlite-20 --rounds 5'
    .venv/bin/python bench/compare.py --cases pg-1,pg-2 --json bench.json
    .venv/bin/python bench/compare.py --cases sqlite-20 --configs production --revisions b2eb9ca,HEAD~1

`--revisions` runs each commit's code (a git worktree of it, this venv) in the production configuration
(or those of `--revision-configs`) beside the working tree's, in the same interleaved rounds: a change's
before and after in one run.

The tables go to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import jwt
import psycopg

from autional_sessions.db.scratch_databases import create_database, drop_databases
from autional_sessions.testing import free_port

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "bench"
BIN = ROOT / ".venv" / "bin"
# The yardstick has these built in; the project and the floor are configured to match them.
SECRET = "reference-bench-secret-0123456789abcdef"
ISSUER, AUDIENCE = "bench-issuer", "bench-audience"
JWT_ENV = {"AUTIONAL_JWT_SECRET": SECRET, "AUTIONAL_JWT_ISSUER": ISSUER, "AUTIONAL_JWT_AUDIENCE": AUDIENCE}
USERS, SESSIONS = 2000, 25
USER_FORMAT = "usr_{:07d}"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# The load comes from one address (127.0.0.1) at a few thousand requests a second, and one limit applies
# per address and per subject: high enough that no request of the bench is refused, in a window of the
# usual length. A subject (one of 2,000 users) sees about one request a second.
RATE_LIMIT = "1000000/minute"
# A wrk result as loadgen prints it: rps, p50_ms, p99_ms, requests, non_2xx, socket_errors.
Round = dict[str, float]
YARDSTICK, FLOOR = "yardstick", "floor"


@dataclass(frozen=True)
class Config:
    """A configuration of the project: what it runs with, and what it is, in words for the table."""

    name: str
    what: str
    log_level: str = "info"
    rate_limits: str | None = "memory"  # None, "memory" or "redis"
    metrics: bool = True
    # Verified tokens kept by the worker (AUTIONAL_JWT_CACHE_SIZE): the yardstick and the floor verify
    # every request's token; `no-token-cache` measures the project doing so too.
    token_cache: bool = True

    @property
    def access_log(self) -> bool:
        return self.log_level in ("info", "debug")

    def env(self, redis_url: str) -> dict[str, str]:
        env = {"AUTIONAL_METRICS": "true" if self.metrics else "false"}
        if not self.token_cache:
            env["AUTIONAL_JWT_CACHE_SIZE"] = "0"
        if self.rate_limits:
            env["AUTIONAL_RATE_LIMIT"] = RATE_LIMIT
        if self.rate_limits == "redis":
            env["AUTIONAL_REDIS_URL"] = redis_url
        return env


CONFIGS = {
    config.name: config
    for config in (
        Config("production", "production: access log at info, rate limits in memory, metrics"),
        Config("light", "access log off, no rate limits (the former `make bench`)", "warning", None),
        Config("no-access-log", "production without the access log", "warning"),
        Config("no-rate-limits", "production without rate limits", rate_limits=None),
        Config("no-metrics", "production without metrics", metrics=False),
        Config("redis", "production with the rate limits in Redis", rate_limits="redis"),
        Config("no-token-cache", "production verifying every request's token in full", token_cache=False),
    )
}
# Each feature's own cost: the production configuration with it against the same without it.
FEATURES = (
    ("access log", "production", "no-access-log"),
    ("rate limits in memory", "production", "no-rate-limits"),
    ("rate limits in Redis", "redis", "no-rate-limits"),
    ("metrics", "production", "no-metrics"),
    # A saving, not a cost (negative): what keeping verified tokens spares a request.
    ("verified tokens kept", "production", "no-token-cache"),
)


@dataclass(frozen=True)
class Case:
    name: str
    engine: str  # "sqlite" or "postgresql"
    workers: int  # the project's; the yardstick and the floor are always one process
    page_size: int
    connections: int
    configs: tuple[str, ...] = ("production",)

    @property
    def query(self) -> str:
        return f"page=1&page_size={self.page_size}"

    @property
    def strict(self) -> bool:
        """At high concurrency the point is that nothing fails, not only how fast it goes."""
        return self.connections >= 256

    @property
    def sides(self) -> list[str]:
        return [project_side(config) for config in self.configs] + [YARDSTICK, FLOOR]


def project_side(config: str) -> str:
    return f"project:{config}"


def revision_side(revision: str, config: str = "production") -> str:
    """A configuration of the project's code at a git revision (`--revisions`, `--revision-configs`)."""
    return f"project:{config}@{revision}"


def side_parts(side: str) -> tuple[str, str]:
    """A project side's configuration, and its revision ("" for the working tree's code)."""
    head, _, revision = side.partition("@")
    return head.partition(":")[2], revision


def side_label(side: str) -> str:
    config, revision = side_parts(side)
    return f"{config} at {revision}" if revision else config


CASES = {
    case.name: case
    for case in (
        Case("sqlite-20", "sqlite", 1, 20, 32, tuple(CONFIGS)),
        Case("sqlite-100", "sqlite", 1, 100, 32),
        Case("sqlite-20-c256", "sqlite", 1, 20, 256),
        Case("pg-1", "postgresql", 1, 20, 32, ("production", "light")),
        Case("pg-2", "postgresql", 2, 20, 32),
        Case("pg-1-c256", "postgresql", 1, 20, 256),
    )
}


class BenchError(Exception):
    """A reason to stop the whole run: a server that won't start, a failed load run, a dishonest pair."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def project_env(database_url: str) -> dict[str, str]:
    return {**os.environ, **JWT_ENV, "AUTIONAL_DATABASE_URL": database_url}


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log_path: Path
    config: Config | None = None  # the project's


@dataclass
class Bench:
    """Databases and servers, made on first use and reused by every case with the same configuration."""

    tmp: Path
    admin_url: str
    redis_url: str
    processes: list[subprocess.Popen] = field(default_factory=list)
    pg_databases: list[str] = field(default_factory=list)
    databases: dict[str, tuple[str, str]] = field(default_factory=dict)  # engine -> (project URL, ref)
    servers: dict[tuple[str, str, int], Server] = field(default_factory=dict)  # (side, engine, workers)
    worktrees: list[Path] = field(default_factory=list)
    # PYTHONHASHSEED of every server started from now on; None: each process draws its own (`run_case`
    # says why a round gives all its servers one).
    hash_seed: str | None = None

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
        self.pg_databases.append(name)  # before creating, so that a half-done run still drops it
        try:
            return create_database(self.admin_url, name)
        except psycopg.OperationalError as exc:
            raise BenchError(
                f"PostgreSQL is needed for the pg-* cases and is not reachable ({str(exc).strip()}); "
                "set AUTIONAL_BENCH_POSTGRES_URL, or pick SQLite cases with --cases"
            ) from exc

    @staticmethod
    def key(side: str, case: Case) -> tuple[str, str, int]:
        return side, case.engine, case.workers if side.startswith("project") else 1

    def restart(self, side: str, case: Case) -> Server:
        """The server of `side` for `case`, stopped and started again (with the current `hash_seed`)."""
        server = self.servers.pop(self.key(side, case), None)
        if server is not None:
            stop(server.process)
            self.processes.remove(server.process)
        return self.server(side, case)

    def server(self, side: str, case: Case) -> Server:
        key = self.key(side, case)
        workers = key[2]
        if key not in self.servers:
            port = free_port()
            name = f"{side.replace(':', '-')}-{case.engine}-{workers}"
            if side == YARDSTICK:
                argv = [
                    str(BIN / "python"),
                    str(SHARED / "reference_server.py"),
                    "--db",
                    self.ref(case.engine),
                ]
                argv += ["--users", str(USERS), "--sessions", str(SESSIONS), "--port", str(port)]
                self.servers[key] = self.start(name, argv, port, dict(os.environ))
            elif side == FLOOR:
                # On the yardstick's database, which the yardstick seeds before it listens.
                self.server(YARDSTICK, case)
                argv = [str(BIN / "python"), str(ROOT / "bench" / "floor_server.py")]
                argv += ["--db", self.ref(case.engine), "--port", str(port)]
                self.servers[key] = self.start(name, argv, port, dict(os.environ))
            else:
                config_name, revision = side_parts(side)
                config = CONFIGS[config_name]
                argv = [str(BIN / "autional-sessions"), "serve", "--port", str(port)]
                argv += ["--workers", str(workers), "--log-level", config.log_level]
                env = {**project_env(self.database(case.engine)[0]), **config.env(self.redis_url)}
                cwd = ROOT
                if revision:  # that revision's code, from a worktree of its own, with this venv
                    argv[:1] = [str(BIN / "python"), "-m", "autional_sessions"]
                    # `python -m` puts its working directory first on sys.path, before PYTHONPATH: run in
                    # the worktree, or the working tree's code is what runs.
                    cwd = self.worktree(revision)
                    env["PYTHONPATH"] = str(cwd)
                self.servers[key] = self.start(name, argv, port, env, cwd=cwd)
                self.servers[key].config = config
        return self.servers[key]

    def worktree(self, revision: str) -> Path:
        path = self.tmp / f"rev-{revision}"
        if not path.exists():
            git = ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), revision]
            subprocess.run(git, check=True, stdout=sys.stderr, stderr=sys.stderr)
            self.worktrees.append(path)
        return path

    def ref(self, engine: str) -> str:
        return self.database(engine)[1]

    def start(self, name: str, argv: list[str], port: int, env: dict[str, str], cwd: Path = ROOT) -> Server:
        log(f"starting {name} on port {port}")
        log_path = self.tmp / f"{name}.log"
        # A process group of its own: `--workers 2` forks children, and stopping the group stops them all.
        if self.hash_seed is not None:
            env = {**env, "PYTHONHASHSEED": self.hash_seed}
        with log_path.open("ab") as output:
            process = subprocess.Popen(
                argv, env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300  # the yardstick seeds PostgreSQL row by row before it listens
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise BenchError(f"{name} exited with {process.returncode} before it answered:\n{tail}")
            with contextlib.suppress(httpx.TransportError):
                httpx.get(url, timeout=1)  # any answer, even a 404, means it listens
                return Server(url, process, log_path)
            time.sleep(0.2)
        raise BenchError(f"{name} did not answer on port {port} within 300 s")

    def close(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            stop(process)
        for path in self.worktrees:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False)
        if not self.pg_databases:
            return
        try:
            drop_databases(self.admin_url, self.pg_databases)
            log(f"dropped {', '.join(self.pg_databases)}")
        except psycopg.Error as exc:
            log(f"could not drop {', '.join(self.pg_databases)}: {exc}")


def stop(process: subprocess.Popen) -> None:
    """Stop a server and the workers of its process group: SIGTERM, then SIGKILL after 15 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def honesty_check(case: Case, servers: dict[str, Server]) -> None:
    """Every server must do the same work for the case, or the ratio compares unlike things; and each
    configuration of the project must have the features it claims on (a Redis that fails open, say,
    would pass for a fast limiter)."""
    user, now = USER_FORMAT.format(42), int(time.time())
    claims = {"sub": user, "iat": now, "exp": now + 600, "iss": ISSUER, "aud": AUDIENCE}
    headers = {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}
    seen: dict[str, tuple[int, int]] = {}
    for side, server in servers.items():
        response = httpx.get(
            f"{server.url}/sessions/user/{user}/sessions?{case.query}", headers=headers, timeout=10
        )
        if response.status_code != 200:
            raise BenchError(
                f"honesty check, {case.name}: {side} said {response.status_code} {response.text}"
            )
        body = response.json()
        seen[side] = (len(body["items"]), body["total"])
        if server.config is not None:
            check_features(case, side, server, response)
    if len(set(seen.values())) != 1:
        raise BenchError(f"honesty check, {case.name}: for {user} (items, total) differ: {seen}")
    log(
        f"[{case.name}] honesty check: every server returns {seen[YARDSTICK][0]} items of {seen[YARDSTICK][1]}"
    )


def check_features(case: Case, side: str, server: Server, response: httpx.Response) -> None:
    config = server.config
    assert config is not None
    limited = "ratelimit-limit" in response.headers
    if limited != bool(config.rate_limits):
        state = "carries" if limited else "lacks"
        raise BenchError(f"honesty check, {case.name}: {side}'s response {state} the RateLimit headers")
    request_id = response.headers["x-request-id"]
    time.sleep(0.2)  # the line may be written off the request's path
    logged = request_id in server.log_path.read_text(errors="replace")
    if logged != config.access_log:
        raise BenchError(
            f"honesty check, {case.name}: {side}'s access log {'has' if logged else 'lacks'} the line"
        )
    metrics = httpx.get(f"{server.url}/metrics", timeout=10)
    counted = metrics.status_code == 200 and "autional_sessions_http_requests_total{" in metrics.text
    if counted != config.metrics:
        raise BenchError(
            f"honesty check, {case.name}: {side}'s /metrics {'counts' if counted else 'lacks'} requests"
        )


def load(url: str, case: Case, seconds: int, cpus: set[int] | None = None) -> Round:
    argv = [str(BIN / "python"), str(SHARED / "loadgen.py"), "--url", url, "--secret", SECRET]
    argv += ["--issuer", ISSUER, "--audience", AUDIENCE, "--users", str(USERS), "--user-format", USER_FORMAT]
    argv += ["--query", case.query, "--seconds", str(seconds), "--connections", str(case.connections)]
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    done = subprocess.run(argv, capture_output=True, text=True, preexec_fn=pin)
    if done.returncode != 0:
        raise BenchError(f"loadgen against {url} failed ({done.returncode}): {done.stderr.strip()[-1000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def group_stats(group: int) -> dict[int, list[str]]:
    """Every live process of the process group `group`, from /proc: its pid, and the fields of its stat
    after the command's closing parenthesis (state ppid pgrp ... utime(14) stime(15) ...)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[2]) == group:
                found[int(stat.parent.name)] = fields
    return found


def pin_group(group: int, cpus: set[int]) -> None:
    """Run every thread of every process of `group` on `cpus` (threads already started keep their own
    affinity, so each is set: the log writer's, a pool's)."""
    for pid in group_stats(group):
        for task in Path(f"/proc/{pid}/task").glob("[0-9]*"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(task.name), cpus)


def placement(case: Case, pin: bool) -> tuple[set[int], set[int]]:
    """The CPUs of the servers and of the load generator. Pinned (the default, on a machine of two CPUs or
    more, for one-worker cases): the server under load alone on the last CPU, wrk and its Lua on the others,
    so that the scheduler's placement of the two from second to second, which moved a configuration's
    rounds by a fifth on the bench machine, stops blurring the comparison. PostgreSQL's backends and Redis
    stay unpinned, as the other servers' are. Cases with several workers use every CPU for both."""
    every = set(os.sched_getaffinity(0))
    if not pin or len(every) < 2 or case.workers > 1:
        return every, every
    server = {max(every)}
    return server, every - server


def group_cpu_seconds(group: int) -> float:
    """CPU time (user and system) of every live process in the process group `group` (a server and the
    workers it forked), from /proc: the server's own work per request, which the load generator sharing
    the machine's cores does not blur as much as it blurs requests a second."""
    ticks = sum(int(fields[11]) + int(fields[12]) for fields in group_stats(group).values())
    return ticks / os.sysconf("SC_CLK_TCK")


def run_case(
    bench: Bench,
    case: Case,
    rounds: int,
    seconds: int,
    revisions: list[str],
    pin: bool = True,
    revision_configs: tuple[str, ...] = ("production",),
    reseed: bool = True,
) -> dict[str, list[Round]]:
    """Every server of the case in every round.

    `reseed`: each round starts every server afresh, all with one PYTHONHASHSEED, another each round. A
    Python process draws its string hashes' seed when it starts, and on the bench machine that alone
    moved a server's CPU time per request by up to a fifth (three servers of one configuration, started
    together: 713, 712 and 588 us a request; with one seed for the three, 656, 654 and 661): more than
    any feature costs. One seed for a round's servers compares them on equal terms; a new one each round
    averages the seeds' luck out, as production's workers, each with its own seed, do."""
    old = [revision_side(r, config) for r in revisions for config in revision_configs]
    sides = case.sides[:-2] + old + case.sides[-2:]
    servers = {side: bench.server(side, case) for side in sides}
    honesty_check(case, servers)
    server_cpus, load_cpus = placement(case, pin)
    if server_cpus != load_cpus:
        log(f"[{case.name}] servers on CPU {sorted(server_cpus)}, the load generator on {sorted(load_cpus)}")
    runs: dict[str, list[Round]] = {side: [] for side in servers}
    for i in range(rounds):
        if reseed:
            bench.hash_seed = str(i + 1)
            log(f"[{case.name}] round {i + 1}/{rounds}: every server started with PYTHONHASHSEED={i + 1}")
            servers = {side: bench.restart(side, case) for side in sides}
            honesty_check(case, servers)  # the restarted ones too: a Redis that fails open, say
        if reseed or i == 0:
            # Warm-up, not recorded: pools, caches, lazy imports, every worker forked; then pinned, every
            # worker and thread started.
            for server in servers.values():
                load(server.url, case, 1, load_cpus)
                pin_group(server.process.pid, server_cpus)
        # Every server in every round, in an order reversed each round, so that a drift in the machine's
        # load favours none of them.
        for side in sides if i % 2 == 0 else sides[::-1]:
            group = servers[side].process.pid  # each server leads a process group (`Bench.start`)
            cpu = group_cpu_seconds(group)
            result = load(servers[side].url, case, seconds, load_cpus)
            result["cpu_us"] = 1e6 * (group_cpu_seconds(group) - cpu) / max(result["requests"], 1)
            runs[side].append(result)
            log(
                f"[{case.name}] round {i + 1}/{rounds} {side:24}: {result['rps']:8.1f} req/s  "
                f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:7.2f} ms  "
                f"cpu {result['cpu_us']:6.0f} us/req  errors {errors(result)}"
            )
    bench.hash_seed = None
    return runs


def median(runs: list[Round], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def cpu(runs: list[Round]) -> float:
    """The server's median CPU time per request, in microseconds (all its processes)."""
    return median(runs, "cpu_us")


def paired_cost(on: list[Round], off: list[Round], key: str, inverse: bool = False) -> tuple[float, str]:
    """A feature's cost in per cent, from the rounds in pairs: in each round, the configuration with it
    against the one without, measured within the same minute; the median of the rounds' costs, and their
    range. Pairs cancel what moves the machine's speed from round to round (by a fifth on the bench
    machine, more than any one feature's cost), which the medians of each side taken apart keep.
    `inverse`: a figure that falls with the cost (requests a second), not one that rises (CPU time)."""
    costs = sorted(
        100 * ((1 - a[key] / b[key]) if inverse else (a[key] / b[key] - 1))
        for a, b in zip(on, off, strict=True)
        if b[key] > 0
    )
    if not costs:  # no round served a request without the feature
        return math.nan, "none"
    return statistics.median(costs), f"{costs[0]:.1f} to {costs[-1]:.1f}"


def errors(*runs: Round) -> int:
    return sum(int(r["non_2xx"] + r["socket_errors"]) for r in runs)


def report(results: dict[str, dict[str, list[Round]]]) -> tuple[str, bool]:
    """The Markdown tables (throughput by case and configuration; each feature's cost), and whether the
    project saw an error in any 256-connection case.

    Errors are counted per server: only the project's fail the run (the yardstick, a synchronous driver on
    its event loop, sometimes drops connections at 256 on PostgreSQL; that is reported, not judged).
    """
    lines = [
        "| case | project configuration | project req/s | yardstick req/s | floor req/s | x yardstick | x floor "
        "| project p50 ms | project p99 ms | yardstick p99 ms | floor p99 ms | p99 x yardstick "
        "| CPU us/req (project / yardstick / floor) | errors (project / yardstick / floor) |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    costs = [
        "| case | feature | req/s with it | req/s without it | cost | rounds' costs | CPU us/req with it "
        "| without it | CPU cost | rounds' CPU costs |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    failed = False
    for name, runs in results.items():
        ref, floor = runs[YARDSTICK], runs[FLOOR]
        ref_rps, floor_rps = median(ref, "rps"), median(floor, "rps")
        ref_p99, floor_p99 = median(ref, "p99_ms"), median(floor, "p99_ms")
        for side, project in runs.items():
            if not side.startswith("project"):
                continue
            count = errors(*project)
            bad = CASES[name].strict and count > 0
            failed |= bad
            rps, p99 = median(project, "rps"), median(project, "p99_ms")
            lines.append(
                f"| {name} | {side_label(side)} | {rps:.0f} | {ref_rps:.0f} | {floor_rps:.0f} "
                f"| {rps / ref_rps:.2f} | {rps / floor_rps:.2f} | {median(project, 'p50_ms'):.2f} | {p99:.2f} "
                f"| {ref_p99:.2f} | {floor_p99:.2f} | {p99 / ref_p99:.2f} "
                f"| {cpu(project):.0f} / {cpu(ref):.0f} / {cpu(floor):.0f} "
                f"| {count} / {errors(*ref)} / {errors(*floor)}{' FAIL' if bad else ''} |"
            )
        for feature, with_it, without_it in FEATURES:
            on, off = runs.get(project_side(with_it)), runs.get(project_side(without_it))
            if on and off:
                rps_cost, rps_spread = paired_cost(on, off, "rps", inverse=True)
                cpu_cost, cpu_spread = paired_cost(on, off, "cpu_us")
                costs.append(
                    f"| {name} | {feature} | {median(on, 'rps'):.0f} | {median(off, 'rps'):.0f} "
                    f"| {rps_cost:.1f} % | {rps_spread} | {cpu(on):.0f} | {cpu(off):.0f} "
                    f"| {cpu_cost:.1f} % | {cpu_spread} |"
                )
    table = "\n".join(lines)
    if len(costs) > 2:
        table += "\n\n" + "\n".join(costs)
    if "pg-1" in results and "pg-2" in results:
        side = project_side("production")
        scaling = median(results["pg-2"][side], "rps") / median(results["pg-1"][side], "rps")
        table += f"\n\npg-2 scaling (project, 2 workers / 1 worker, median req/s): {scaling:.2f}x"
    return table, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per case and server")
    parser.add_argument("--seconds", type=int, default=6, help="length of one round")
    parser.add_argument("--json", metavar="PATH", help="also write every round's raw result there")
    parser.add_argument(
        "--configs",
        help=f"comma-separated configurations of the project for every case, from {', '.join(CONFIGS)}",
    )
    parser.add_argument(
        "--revisions",
        default="",
        help="comma-separated git revisions whose code also runs, in the production configuration (or those "
        "of --revision-configs), beside the working tree's (before and after a change, in one interleaved run)",
    )
    parser.add_argument(
        "--revision-configs",
        default="production",
        help="comma-separated configurations the revisions' code runs in (default: production)",
    )
    parser.add_argument(
        "--no-reseed",
        action="store_true",
        help="keep each server, and the hash seed its process drew, for every round (by default each round "
        "restarts every server with one PYTHONHASHSEED, another each round)",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="let the scheduler place servers and load generator (by default, one-worker cases run the "
        "server alone on the last CPU and the load generator on the others)",
    )
    args = parser.parse_args()
    unknown = [name for name in args.cases.split(",") if name not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    if args.rounds < 1 or args.seconds < 1:
        parser.error("--rounds and --seconds must be at least 1")
    cases = [CASES[name] for name in args.cases.split(",")]
    if args.configs:
        configs = tuple(args.configs.split(","))
        if not set(configs) <= set(CONFIGS):
            parser.error(f"unknown configuration(s) in {args.configs}; choose from {', '.join(CONFIGS)}")
        cases = [dataclasses.replace(case, configs=configs) for case in cases]
    revision_configs = tuple(args.revision_configs.split(","))
    if not set(revision_configs) <= set(CONFIGS):
        parser.error(f"unknown configuration(s) in {args.revision_configs}; choose from {', '.join(CONFIGS)}")
    # SIGTERM as an exit, so that the `finally` below still stops the servers and drops the databases.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    results: dict[str, dict[str, list[Round]]] = {}
    with tempfile.TemporaryDirectory(prefix="autional-bench-") as tmp:
        bench = Bench(
            Path(tmp),
            os.environ.get("AUTIONAL_BENCH_POSTGRES_URL", DEFAULT_ADMIN_URL),
            os.environ.get("AUTIONAL_BENCH_REDIS_URL", DEFAULT_REDIS_URL),
        )
        try:
            for case in cases:
                revisions = [r for r in args.revisions.split(",") if r]
                results[case.name] = run_case(
                    bench,
                    case,
                    args.rounds,
                    args.seconds,
                    revisions,
                    pin=not args.no_pin,
                    revision_configs=revision_configs,
                    reseed=not args.no_reseed,
                )
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
