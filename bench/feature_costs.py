"""What each production feature costs a request, measured in one process, without the network or the load
generator: CPU time per request of the app with every feature, and without each one in turn.

`make bench` measures throughput over HTTP, with wrk sharing the machine's two cores with the server, and
a configuration's rounds spread by several per cent: too much to tell a 3 % feature from a 6 % one. Here
the apps of every configuration are built in one process, on one seeded SQLite database (the bench's data:
2,000 users x 25 sessions), and called as uvicorn calls them (an ASGI scope, a random user and its own
token per request), in short blocks interleaved round-robin so that a drift of the machine favours none;
the lower quartile of a configuration's blocks (CPU time per request) is its figure (`report` says why
not the median). What it leaves out, uvicorn's HTTP parsing and writing, is the same for every
configuration: the difference between two configurations is the feature's own cost, and its share of the
production configuration's full cost per request is what `make bench`'s CPU column shows for it.

    .venv/bin/python bench/feature_costs.py
    .venv/bin/python bench/feature_costs.py --blocks 200 --requests 100
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import logging.config
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jwt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from compare import AUDIENCE, BIN, ISSUER, JWT_ENV, RATE_LIMIT, SECRET, SESSIONS, USER_FORMAT, USERS  # noqa: E402

# What each configuration leaves out of production (access log at info, rate limits in memory, metrics).
CONFIGS = {
    "production": set(),
    "no-access-log": {"access log"},
    "no-rate-limits": {"rate limits"},
    "no-metrics": {"metrics"},
    "light": {"access log", "rate limits"},
}


def seed(directory: Path) -> str:
    url = f"sqlite:///{directory}/features.db"
    env = {**os.environ, **JWT_ENV, "AUTIONAL_DATABASE_URL": url}
    cli = str(BIN / "autional-sessions")
    subprocess.run([cli, "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    seed_args = ["seed", "--users", str(USERS), "--sessions-per-user", str(SESSIONS)]
    subprocess.run([cli, *seed_args], env=env, check=True, stdout=subprocess.DEVNULL)
    return url


def build_apps(url: str, log_path: Path) -> dict:
    # Logging as `serve` sets it up in a worker (JSON lines written by a thread), to a file.
    os.environ.update({**JWT_ENV, "AUTIONAL_DATABASE_URL": url})
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # one process: metrics in memory, as `serve --workers 1`
    from autional_sessions.config import Settings
    from autional_sessions.http.app import create_app
    from autional_sessions.observability.log_format import uvicorn_log_config

    config = uvicorn_log_config("info", "json")
    config["handlers"]["default"]["stream"] = log_path.open("w")
    logging.config.dictConfig(config)
    base = Settings.from_env()
    apps = {}
    for name, without in CONFIGS.items():
        settings = Settings(
            **{
                **base.__dict__,
                "rate_limit": None if "rate limits" in without else RATE_LIMIT,
                "metrics": "metrics" not in without,
            }
        )
        apps[name] = create_app(settings)
    return apps


async def measure(apps: dict, blocks: int, requests: int) -> dict[str, list[float]]:
    from autional_sessions.observability.log_format import ACCESS_LOGGER, json_line_sink

    access = logging.getLogger(ACCESS_LOGGER)
    sink = json_line_sink(access)
    now = int(time.time())
    users = [USER_FORMAT.format(n) for n in range(USERS)]
    tokens = {
        user: jwt.encode(
            {"sub": user, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 3600},
            SECRET,
            algorithm="HS256",
        ).encode()
        for user in users
    }
    rng = random.Random(1)

    async def call(app, user: str) -> None:
        path = f"/sessions/user/{user}/sessions"
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"page=1&page_size=20",
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1:8000"), (b"authorization", b"Bearer " + tokens[user])],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        sent: list = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        await app(scope, receive, send)
        if sent[0]["status"] != 200:
            raise SystemExit(f"{path} answered {sent[0]['status']}: {sent[1].get('body', b'')[:300]!r}")

    for app in apps.values():  # warm-up: every user once (its token verified and kept), every code path
        for user in users:
            await call(app, user)
    costs: dict[str, list[float]] = {name: [] for name in apps}
    for block in range(blocks):
        order = list(apps) if block % 2 == 0 else list(apps)[::-1]
        for name in order:
            access.setLevel(logging.WARNING if "access log" in CONFIGS[name] else logging.INFO)
            picks = [rng.choice(users) for _ in range(requests)]
            started = time.process_time()
            for user in picks:
                await call(apps[name], user)
            # The block's access lines made and written by the thread, inside the block's time: a request
            # never waits here (SQLite is read on the loop), so the batch's timer would hand them over
            # during some later block, and charge their making to it.
            if sink is not None:
                sink.wait_written()
            costs[name].append(1e6 * (time.process_time() - started) / requests)
    access.setLevel(logging.NOTSET)
    return costs


def report(costs: dict[str, list[float]]) -> str:
    """Each configuration's lower quartile of blocks and median block, and what it leaves out, two ways:
    the difference of lower quartiles, and the median of the differences between its block and
    production's block of the same turn (a fifth of a second apart at most).

    Why not the medians: on the bench machine a core runs at half its speed for a quarter of a second to a
    second at a time, a third of the time or so (another tenant of the host, as a plain Python loop timed
    every quarter of a second shows), which doubles the CPU time of the blocks it falls on and spreads any
    configuration's blocks by a factor of two. That slowing only ever adds, so the faster blocks are the
    ones it missed (as `timeit` takes the fastest of its repeats, for the same reason); and it lasts
    longer than a turn of short blocks, so two blocks of one turn mostly share it, and their difference
    cancels it."""
    quartile = {name: statistics.quantiles(blocks, n=4)[0] for name, blocks in costs.items()}
    production = quartile["production"]
    lines = [
        "| configuration | CPU us/request (lower quartile of blocks) | median block | spread of blocks "
        "| cost of what it leaves out (lower quartiles) | (paired blocks, median) |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for name, blocks in costs.items():
        spread = f"{min(blocks):.0f} to {max(blocks):.0f}"
        cost = paired = ""
        if name != "production":
            saved = production - quartile[name]
            cost = f"{saved:.1f} us ({100 * saved / production:.1f} %)"
            difference = statistics.median(p - b for p, b in zip(costs["production"], blocks, strict=True))
            paired = f"{difference:.1f} us ({100 * difference / production:.1f} %)"
        lines.append(
            f"| {name} | {quartile[name]:.1f} | {statistics.median(blocks):.1f} | {spread} | {cost} | {paired} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=100, help="blocks of requests per configuration")
    parser.add_argument("--requests", type=int, default=200, help="requests per block")
    args = parser.parse_args()
    if args.blocks < 2 or args.requests < 1:
        parser.error("--blocks must be at least 2 (quartiles) and --requests at least 1")
    with tempfile.TemporaryDirectory(prefix="autional-feature-costs-") as tmp:
        url = seed(Path(tmp))
        # On one CPU, as `compare.py` runs a one-worker server (the log's writing thread, started with the
        # apps, too): no block pays for a move between cores.
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
        apps = build_apps(url, Path(tmp) / "access.log")
        # As a worker of the server does once its app is built (`create_app_from_env`): without it, full
        # collections walk the spec, the validators and the modules of every app, and the blocks they fall
        # on (a tenth of them, up to five times the usual time) spread every configuration's figures.
        gc.collect()
        gc.freeze()
        costs = asyncio.run(measure(apps, args.blocks, args.requests))
        from autional_sessions.observability.log_format import drain_logs

        drain_logs()
    print(report(costs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
