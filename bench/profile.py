"""Where a configuration of the project spends its time under the bench's load: py-spy on the running server.

Starts the project as `make bench` does (SQLite, one worker, the same data), drives it with the bench's load
generator, and samples it with py-spy (the `bench` extra) for the length of the load. Writes py-spy's
collapsed stacks (one line per distinct stack, its sample count at the end; for flame-graph tools) and
prints the share of the event loop thread's samples each frame is in (inclusive) and on top of (self), most
first; other threads (the log writer's, an idle pool's) are counted apart. Then each production feature's
own share of the server's samples, every thread's (`feature_shares`): the rate limits', the access log's
(its writing thread included) and the metrics'. A share of one process's samples shows where a feature's
time goes, and a slow phase of the machine, which slows every line alike, leaves it as it is; but a
sampler's shares lean (a paused process is caught leaving system calls, an unpaused one's changing stacks
are dropped), so what a feature costs is timed (`feature_costs.py`) against the server's CPU a request.

    .venv/bin/python bench/profile.py                        # production configuration
    .venv/bin/python bench/profile.py --config light --seconds 20 --out light.txt

py-spy reads another process's memory: it needs ptrace rights (root, or CAP_SYS_PTRACE in a container).
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from compare import BIN, CASES, CONFIGS, DEFAULT_REDIS_URL, ROOT, Bench, BenchError, Case, load, log

# Each production feature's own code, by the project's module. A sample is a feature's when the innermost
# frame of its modules is followed by no frame of another layer of the server: not the feature handing
# the request or a response message on (`await self.app(...)`, `return send(message)`), but its own work
# and the libraries it calls (limits, prometheus-client, orjson, logging, math).
FEATURES = {
    "rate limits": ("autional_sessions/http/rate_limits.py", "autional_sessions/security/rate_limiter.py"),
    "access log": (
        "autional_sessions/observability/access_log.py",
        "autional_sessions/observability/log_format.py",
    ),
    "metrics": ("autional_sessions/observability/metrics.py",),
}
# Libraries that only a feature uses: their frames are its work wherever they run, under the feature's
# own frames or on their own (coredis reading Redis's answer in a callback of the event loop).
FEATURE_LIBRARIES = {"limits": "rate limits", "coredis": "rate limits", "prometheus_client": "metrics"}
# Project modules that do a feature's work when one calls them, and are not a layer of the stack: the client
# address (asked for by the rate limits and the access log, each counted for the feature that asks), and
# the problems (a 429 the rate limits make).
HELPERS = ("autional_sessions/http/client_address.py", "autional_sessions/problems/factory.py")
# The project's packages: a module of theirs that is neither a feature's nor a helper is a layer.
PROJECT_PACKAGES = ("autional_sessions", "handlers", "db")
# Libraries that are layers of the server: a frame of theirs after a feature's is the feature passing on.
LAYER_PACKAGES = ("connexion", "starlette", "uvicorn")


def summarize(collapsed: str, top: int) -> str:
    """Inclusive and self shares of the samples, by frame (`function (file)`), from py-spy's collapsed
    stacks: `frame;frame;...;frame COUNT` per line, outermost first."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = threads = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        if stack.startswith(("_bootstrap ", "Thread._bootstrap ")):
            threads += int(count)
            continue  # a thread other than the event loop's (the log writer's, a pool's)
        samples = int(count)
        total += samples
        frames = [_frame(f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += samples
        own[frames[-1]] += samples
    if not total:
        return "no samples"
    lines = [f"{total} samples of the event loop's thread ({threads} of other threads, idle ones included)"]
    lines += ["", "inclusive:"]
    lines += [f"{100 * n / total:5.1f} %  {frame}" for frame, n in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"{100 * n / total:5.1f} %  {frame}" for frame, n in own.most_common(top)]
    return "\n".join(lines)


def feature_shares(collapsed: str, root: Path = ROOT) -> tuple[int, dict[str, int]]:
    """Every thread's samples, and each feature's own (`FEATURES`): a share of the server's CPU time taken
    from one process under load, which a slow phase of the machine leaves as it is (it slows every line
    alike), where it moves a comparison of two processes' throughput or CPU time by a fifth. A thread of
    the access log's (its writing thread: a frame of its modules anywhere in a stack that is not the event
    loop's) is the access log's work throughout."""
    total = 0
    found = dict.fromkeys(FEATURES, 0)
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        kinds = [_kind(frame, root) for frame in stack.split(";")]
        if stack.startswith(("_bootstrap ", "Thread._bootstrap ")):  # a thread of its own
            if "access log" in kinds:
                found["access log"] += samples
            continue
        innermost = max((i for i, kind in enumerate(kinds) if kind in FEATURES), default=None)
        if innermost is not None and "layer" not in kinds[innermost + 1 :]:
            found[kinds[innermost]] += samples
    return total, found


def _kind(frame: str, root: Path) -> str:
    """A frame's feature (a key of FEATURES), or "layer" (another module of the project, or a library of
    `LAYER_PACKAGES`), or "other" (a helper, a library, the standard library)."""
    return _module_kind(frame.partition(" (")[2].rstrip(")").rpartition(":")[0], root)


@functools.cache
def _module_kind(path: str, root: Path) -> str:
    # py-spy names a module by its path below the entry of sys.path it was found in ("connexion/...",
    # "autional_sessions/..."); an absolute path is read the same way, below site-packages or the root.
    parts = Path(path).parts
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    elif Path(path).is_absolute() and Path(path).is_relative_to(root):
        parts = Path(path).relative_to(root).parts
    module = "/".join(parts)
    for feature, modules in FEATURES.items():
        if module in modules:
            return feature
    if module in HELPERS:
        return "other"
    if parts and parts[0] in FEATURE_LIBRARIES:
        return FEATURE_LIBRARIES[parts[0]]
    return "layer" if parts and parts[0] in (*PROJECT_PACKAGES, *LAYER_PACKAGES) else "other"


def _frame(frame: str) -> str:
    # "function (path/to/module.py:LINE)": the line number would split one function into many rows.
    function, _, where = frame.partition(" (")
    path = where.rstrip(")").rpartition(":")[0]
    return f"{function} ({'/'.join(Path(path).parts[-2:])})" if path else function


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="production", choices=list(CONFIGS))
    parser.add_argument("--case", default="sqlite-20", choices=list(CASES))
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--out", metavar="PATH", help="keep the collapsed stacks there")
    args = parser.parse_args()
    base = CASES[args.case]
    case = Case(base.name, base.engine, base.workers, base.page_size, base.connections, (args.config,))
    with tempfile.TemporaryDirectory(prefix="autional-profile-") as tmp:
        bench = Bench(Path(tmp), "", os.environ.get("AUTIONAL_BENCH_REDIS_URL", DEFAULT_REDIS_URL))
        try:
            server = bench.server(f"project:{args.config}", case)
            load(server.url, case, 2)  # warm-up
            out = Path(args.out) if args.out else Path(tmp) / "profile.txt"
            # Without pausing the server for each sample: on the bench machine (a Firecracker VM), a paused
            # process is caught on its way out of a system call far more often than its time there
            # warrants. A loop of 4.1 us of Python and a 0.19 us getpid() put 85 % of its samples on the
            # getpid when paused, 8 % when not; a request's one getpid (asyncio.get_running_loop) drew
            # 1.5 % of a server's samples. Unpaused, a sample may now and then read a stack mid-change.
            spy = [
                str(BIN / "py-spy"),
                "record",
                "--nonblocking",
                "--format",
                "raw",
                "--rate",
                str(args.rate),
            ]
            spy += ["--duration", str(args.seconds), "--pid", str(server.process.pid), "-o", str(out)]
            loader = threading.Thread(target=load, args=(server.url, case, args.seconds + 1))
            loader.start()
            subprocess.run(spy, check=True, stdout=sys.stderr, stderr=sys.stderr)
            loader.join()
        except (BenchError, subprocess.CalledProcessError) as exc:
            log(f"profile: {exc}")
            return 1
        finally:
            bench.close()
        collapsed = out.read_text()
        print(summarize(collapsed, args.top))
        total, found = feature_shares(collapsed)
        if total:
            print(f"\neach feature's own share of the server's samples (every thread's, {total}):")
            for feature, samples in found.items():
                print(f"{100 * samples / total:5.1f} %  {feature}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
