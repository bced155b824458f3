"""Where a configuration of the project spends its time under the bench's load: py-spy on the running server.

Starts the project as `make bench` does (SQLite, one worker, the same data), drives it with the bench's load
generator, and samples it with py-spy (the `bench` extra) for the length of the load. Writes py-spy's
collapsed stacks (one line per distinct stack, its sample count at the end; for flame-graph tools) and
prints the share of the event loop thread's samples each frame is in (inclusive) and on top of (self), most
first. Other threads (the log writer's, an idle pool's) are counted apart: `--threads` lists theirs.

    .venv/bin/python bench/profile.py                        # production configuration
    .venv/bin/python bench/profile.py --config light --seconds 20 --out light.txt

py-spy reads another process's memory: it needs ptrace rights (root, or CAP_SYS_PTRACE in a container).
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from compare import BIN, CASES, CONFIGS, DEFAULT_REDIS_URL, Bench, BenchError, Case, load, log


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
            spy = [str(BIN / "py-spy"), "record", "--format", "raw", "--rate", str(args.rate)]
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
        print(summarize(out.read_text(), args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
