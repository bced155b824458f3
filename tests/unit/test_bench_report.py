"""The bench's tables (bench/compare.py): what `make bench` prints from its measured rounds."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.bench_scripts import bench_script

compare = bench_script("compare")


def rounds(rps: float, p99: float = 10.0, non_2xx: int = 0, cpu_us: float = 500.0) -> list[dict[str, float]]:
    one = {
        "cpu_us": cpu_us,
        "rps": rps,
        "p50_ms": p99 / 2,
        "p99_ms": p99,
        "requests": rps,
        "non_2xx": non_2xx,
        "socket_errors": 0,
    }
    return [dict(one, rps=rps - 10), dict(one), dict(one, rps=rps + 10)]


def test_each_configuration_is_a_row_beside_the_yardstick_and_the_floor_and_each_feature_has_its_cost():
    results = {
        "sqlite-20": {
            "project:production": rounds(900, cpu_us=660),
            "project:no-access-log": rounds(1000, cpu_us=600),
            "project:no-rate-limits": rounds(950),
            "yardstick": rounds(1000, p99=20),
            "floor": rounds(1500),
        }
    }

    table, failed = compare.report(results)

    assert not failed
    assert (
        "| sqlite-20 | production | 900 | 1000 | 1500 | 0.90 | 0.60 | 5.00 | 10.00 | 20.00 | 10.00 | 0.50 "
        "| 660 / 500 / 500 | 0 / 0 / 0 |" in table
    )
    assert (
        "| sqlite-20 | access log | 900 | 1000 | 10.0 % | 9.9 to 10.1 | 660 | 600 | 10.0 % | 10.0 to 10.0 |"
        in table
    )
    assert (
        "| sqlite-20 | rate limits in memory | 900 | 950 | 5.3 % | 5.2 to 5.3 | 660 | 500 | 32.0 % | 32.0 to 32.0 |"
        in table
    )
    assert "rate limits in Redis" not in table  # not measured in this run


def test_a_feature_s_cost_is_taken_round_by_round_so_the_machine_s_drift_cancels_out():
    # The machine slows down in the third round for both sides of the pair: each round says 10 %, where
    # the medians of each side taken apart (200 against 110) would say the feature is worth 82 %.
    with_it = [dict(r, rps=rps) for r, rps in zip(rounds(0), (90, 180, 200), strict=True)]
    without = [dict(r, rps=rps) for r, rps in zip(rounds(0), (100, 200, 110), strict=True)]

    cost, spread = compare.paired_cost(with_it, without, "rps", inverse=True)

    assert (round(cost, 1), spread) == (10.0, "-81.8 to 10.0")


def test_one_worker_s_server_and_its_load_generator_run_on_cpus_apart():
    one, two = compare.CASES["sqlite-20"], compare.CASES["pg-2"]
    every = set(os.sched_getaffinity(0))

    server, load = compare.placement(one, pin=True)

    if len(every) >= 2:
        assert server and load and not server & load and server | load == every
    assert compare.placement(two, pin=True) == (every, every)  # several workers: every CPU for both
    assert compare.placement(one, pin=False) == (every, every)


def test_pinning_a_server_pins_every_thread_of_every_process_of_its_group():
    code = "import threading, time; threading.Thread(target=time.sleep, args=(60,)).start(); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        time.sleep(0.5)  # the thread started
        cpu = max(os.sched_getaffinity(0))
        compare.pin_group(child.pid, {cpu})
        tasks = list(Path(f"/proc/{child.pid}/task").iterdir())
        assert len(tasks) == 2
        assert all(os.sched_getaffinity(int(task.name)) == {cpu} for task in tasks)
    finally:
        child.kill()
        child.wait()


def test_an_error_of_the_project_at_256_connections_fails_the_run_and_one_of_the_yardstick_does_not():
    ok = {"project:production": rounds(900), "yardstick": rounds(1000, non_2xx=3), "floor": rounds(1500)}
    bad = dict(ok, **{"project:production": rounds(900, non_2xx=1)})

    assert not compare.report({"sqlite-20-c256": ok})[1]
    table, failed = compare.report({"sqlite-20-c256": bad})
    assert failed
    assert "| 3 / 9 / 0 FAIL |" in table


def test_a_server_s_cpu_time_counts_every_process_of_its_group():
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    try:
        before = compare.group_cpu_seconds(child.pid)
        deadline = time.monotonic() + 30
        while compare.group_cpu_seconds(child.pid) < before + 0.2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert compare.group_cpu_seconds(child.pid) >= before + 0.2
        assert compare.group_cpu_seconds(os.getpgrp()) > 0  # this process's own group, not the child's
    finally:
        child.kill()
        child.wait()


def test_a_server_started_in_a_round_gets_the_round_s_hash_seed(tmp_path):
    bench = compare.Bench(tmp_path, "", "")
    bench.hash_seed = "7"
    port = compare.free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    server = bench.start("probe", argv, port, {**os.environ, "PYTHONHASHSEED": "random"})
    try:
        environ = Path(f"/proc/{server.process.pid}/environ").read_bytes().split(b"\0")
        assert b"PYTHONHASHSEED=7" in environ
    finally:
        bench.close()


def test_a_revision_runs_in_each_configuration_asked_for_and_its_rows_say_which():
    assert compare.side_parts(compare.revision_side("3b98d7b", "redis")) == ("redis", "3b98d7b")
    assert compare.side_parts(compare.revision_side("3b98d7b")) == ("production", "3b98d7b")
    assert compare.side_parts(compare.project_side("redis")) == ("redis", "")
    results = {
        "sqlite-20": {
            compare.project_side("redis"): rounds(900),
            compare.revision_side("3b98d7b", "redis"): rounds(800),
            compare.revision_side("3b98d7b"): rounds(950),
            "yardstick": rounds(1000),
            "floor": rounds(1500),
        }
    }

    table, _ = compare.report(results)

    rows = {line.split(" | ")[1]: line.split(" | ")[2] for line in table.splitlines() if "sqlite-20" in line}
    assert rows == {"redis": "900", "redis at 3b98d7b": "800", "production at 3b98d7b": "950"}
