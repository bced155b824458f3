"""The access log is written off the event loop; a SIGTERM under load still loses none of its lines."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import httpx
import pytest

from autional_sessions.observability.log_format import ACCESS_LOGGER
from tests.factories import add_session, add_user
from tests.postgres.support import Server

USER = "usr_shutdown01"
CLIENTS = 8


@pytest.mark.slow
def test_every_request_answered_before_a_sigterm_under_load_has_its_access_line(
    database, database_url, tmp_path, auth_headers
):
    add_user(USER)
    add_session("sess_shutdown_1", USER)
    headers = auth_headers(USER)
    server = Server(database_url, tmp_path / "server.log")
    answered: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            while not stop.is_set():
                try:
                    response = http.get(f"/sessions/user/{USER}/sessions", headers=headers)
                except httpx.TransportError:
                    return  # the server has stopped listening
                assert response.status_code == 200, response.text
                answered.append(response.headers["x-request-id"])

    try:
        server.wait_ready()
        clients = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for thread in clients:
            thread.start()
        deadline = time.monotonic() + 30
        while len(answered) < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.killpg(server.process.pid, signal.SIGTERM)  # while the clients keep sending
        server.process.wait(timeout=30)
    finally:
        stop.set()
        server.stop()
    for thread in clients:
        thread.join(timeout=10)

    logged = set()
    for line in server.log().splitlines():
        entry = json.loads(line)
        if entry["logger"] == ACCESS_LOGGER:
            logged.add(entry["request_id"])
    assert len(answered) >= 300
    missing = set(answered) - logged
    assert not missing, f"{len(missing)} of {len(answered)} answered requests have no access line"
