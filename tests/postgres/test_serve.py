"""`autional-sessions serve --workers N` runs N worker processes, and several instances share one database."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.factories import add_session, add_user
from tests.postgres.support import (
    READY_SECONDS,
    Server,
    accepts_connections,
    postgres_only,
    running_server,
    running_statements,
    wait_until,
)
from tests.postgres.test_engine import server_connections

USER = "usr_serve001"


def parent_pid(pid: int) -> int:
    # /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after its ")".
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def wait_for_workers(server: Server, count: int) -> set[int]:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        pids = server.worker_pids()
        if len(pids) >= count:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"{count} workers not started after {READY_SECONDS}s:\n{server.log()}")


def listed_ids(server: Server, headers: dict[str, str]) -> list[str]:
    response = httpx.get(f"{server.url}/sessions/user/{USER}/sessions", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


@pytest.mark.slow
def test_workers_are_processes_and_instances_share_the_database(
    database, database_url, tmp_path, auth_headers
):
    add_user(USER)
    add_session("sess_serve_1", USER)
    headers = auth_headers(USER)

    with (
        running_server(database_url, tmp_path / "a.log", workers=2) as a,
        running_server(database_url, tmp_path / "b.log", workers=1) as b,
    ):
        workers = wait_for_workers(a, 2)
        assert len(workers) == 2
        assert {parent_pid(pid) for pid in workers} == {a.process.pid}

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda server: listed_ids(server, headers), [a, b] * 8))
        assert answers == [["sess_serve_1"]] * 16

        # What one writer adds, every instance and worker lists at once: no instance keeps its own copy.
        add_session("sess_serve_2", USER)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda server: sorted(listed_ids(server, headers)), [a, b] * 8))
        assert answers == [["sess_serve_1", "sess_serve_2"]] * 16


@pytest.mark.slow
def test_a_served_response_names_no_server_software(database, database_url, tmp_path, auth_headers):
    add_user(USER)
    with running_server(database_url, tmp_path / "server.log", workers=1) as server:
        response = httpx.get(f"{server.url}/sessions/user/{USER}/sessions", headers=auth_headers(USER))

    assert response.status_code == 200
    assert "server" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.slow
def test_two_workers_log_json_lines_and_share_their_metrics(database, database_url, tmp_path, auth_headers):
    import json

    add_user(USER)
    add_session("sess_serve_secret_1", USER)
    add_session("sess_serve_secret_2", USER)
    headers = auth_headers(USER, sid="sess_serve_secret_1")
    token = headers["Authorization"].split()[1]

    with running_server(database_url, tmp_path / "server.log", workers=2) as server:
        wait_for_workers(server, 2)
        url = f"{server.url}/sessions/user/{USER}/sessions"
        with httpx.Client(timeout=10) as client:
            statuses = [client.get(url, headers=headers).status_code for _ in range(20)]
            revoke = client.delete(f"{url}/sess_serve_secret_2", headers=headers)
            scrapes = [client.get(f"{server.url}/metrics").text for _ in range(4)]
    # Read once the server has stopped: lines are written by a thread, in batches, and all by the exit.
    log = server.log()

    assert statuses == [200] * 20 and revoke.status_code == 204
    # Whichever worker answers the scrape, it counts the requests of both.
    line = '{method="GET",route="/sessions/user/{user_id}/sessions",status="200"} 20.0'
    assert all("autional_sessions_http_requests_total" + line in text for text in scrapes), scrapes[0]
    records = [json.loads(raw) for raw in log.splitlines() if raw.startswith("{")]
    access = [r for r in records if r["logger"] == "autional_sessions.access"]
    assert len(access) >= 21
    assert {r["route"] for r in access} >= {"/sessions/user/{user_id}/sessions"}
    assert any(r.get("event") == "session.revoked" for r in records)
    for secret in (token, "sess_serve_secret_1", "sess_serve_secret_2"):
        assert secret not in log


@postgres_only
@pytest.mark.slow
def test_sigterm_stops_accepting_and_lets_a_request_in_flight_finish(
    database, database_url, tmp_path, auth_headers
):
    add_user(USER)
    add_session("sess_serve_1", USER)
    name = f"autional-test-{uuid.uuid4().hex[:8]}"
    env = {"AUTIONAL_SERVICE_NAME": name, "AUTIONAL_SHUTDOWN_GRACE_SECONDS": "10"}
    server = Server(database_url, tmp_path / "server.log", workers=1, env=env)
    answers: list[httpx.Response] = []
    # The table locked by another transaction: the request waits for it, in flight on the server.
    locker = psycopg.connect(database_url)
    try:
        server.wait_ready()
        url = f"{server.url}/sessions/user/{USER}/sessions"
        with locker.cursor() as cur:
            cur.execute("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
        in_flight = threading.Thread(
            target=lambda: answers.append(httpx.get(url, headers=auth_headers(USER), timeout=30))
        )
        in_flight.start()
        wait_until(
            lambda: running_statements(database_url, "sessions", waiting_for_lock=True) >= 1,
            "the request in flight, waiting for the locked table",
        )
        os.kill(server.process.pid, signal.SIGTERM)
        wait_until(lambda: not accepts_connections(server.port), "the server stops accepting")
        with pytest.raises(httpx.TransportError):  # no longer accepting
            httpx.get(url, headers=auth_headers(USER), timeout=2)
        locker.rollback()  # the lock goes: the request in flight completes
        in_flight.join(timeout=15)
        # uvicorn re-raises the signal it shut down for, once it is done: a clean exit by SIGTERM.
        assert server.process.wait(timeout=15) in (0, -signal.SIGTERM)
    finally:
        locker.close()
        server.stop()

    assert [r.status_code for r in answers] == [200], server.log()
    assert [item["id"] for item in answers[0].json()["items"]] == ["sess_serve_1"]
    assert server_connections(name) == 0


@pytest.mark.slow
def test_sigterm_removes_the_temporary_metrics_directory(database_url, tmp_path):
    # Without PROMETHEUS_MULTIPROC_DIR, serve makes a temporary directory (under TMPDIR) and removes it
    # however it stops; uvicorn ends a SIGTERM by raising the signal again, which skips atexit.
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {"TMPDIR": str(scratch), "PROMETHEUS_MULTIPROC_DIR": ""}
    server = Server(database_url, tmp_path / "server.log", workers=2, env=env)
    try:
        server.wait_ready()
        wait_for_workers(server, 2)
        (directory,) = scratch.glob("autional-sessions-metrics-*")
        os.kill(server.process.pid, signal.SIGTERM)
        assert server.process.wait(timeout=15) in (0, -signal.SIGTERM)
    finally:
        server.stop()

    assert not directory.exists(), server.log()
    # The notice of a dependency's test helper is silenced in the serving process.
    assert "StarletteDeprecationWarning" not in server.log()


@pytest.mark.slow
def test_one_worker_counts_its_metrics_in_memory_and_writes_no_files(
    database, database_url, tmp_path, auth_headers
):
    add_user(USER)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {"TMPDIR": str(scratch), "PROMETHEUS_MULTIPROC_DIR": ""}
    with (
        running_server(database_url, tmp_path / "server.log", workers=1, env=env) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        for _ in range(3):
            client.get(f"/sessions/user/{USER}/sessions", headers=auth_headers(USER))
        scrape = client.get("/metrics").text

    assert not list(scratch.iterdir())  # no directory of files shared with other workers
    series = 'autional_sessions_http_requests_total{method="GET",route="/sessions/user/{user_id}/sessions",status="200"}'
    assert f"{series} 3.0" in scrape
