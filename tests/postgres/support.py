"""Helpers of the deployment tests: engine-specific skips, `autional-sessions serve` in a subprocess, an ASGI
app served in a thread, and a TCP proxy that cuts a server off from its database without touching the
database server (other test runs share it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

from autional_sessions.testing import (
    TEST_AUDIENCE,
    TEST_ISSUER,
    TEST_SECRET,
    free_port,
    postgres_admin_connection,
    test_engine,
)
from tests.checkout import checkout_env

READY_SECONDS = 30

postgres_only = pytest.mark.skipif(
    test_engine() != "postgresql",
    reason="needs PostgreSQL: runs in the AUTIONAL_TEST_DATABASE=postgresql pass of `make test`",
)
sqlite_only = pytest.mark.skipif(
    test_engine() != "sqlite", reason="about the SQLite engine: runs in the SQLite pass of `make test`"
)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = READY_SECONDS) -> None:
    """Poll `condition` until it holds, rather than sleep a guess; fail saying `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not after {timeout}s: {what}")
        time.sleep(0.05)


async def wait_until_async(condition: Callable[[], bool], what: str, timeout: float = READY_SECONDS) -> None:
    """`wait_until` inside an event loop: the loop runs between polls."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not after {timeout}s: {what}")
        await asyncio.sleep(0.05)


def running_statements(database_url: str, text: str, *, waiting_for_lock: bool = False) -> int:
    """How many statements containing `text` run now in the PostgreSQL database of `database_url` (those
    waiting for a lock only, with `waiting_for_lock`)."""
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
        "AND state = 'active' AND strpos(query, %s) > 0"
    )
    if waiting_for_lock:
        query += " AND wait_event_type = 'Lock'"
    conn = postgres_admin_connection()
    try:
        with conn.cursor() as cur:
            cur.execute(query, (urlparse(database_url).path.lstrip("/"), text))
            return cur.fetchone()[0]
    finally:
        conn.close()


def accepts_connections(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


class Server:
    """`autional-sessions serve` in its own process group, its log in a file."""

    def __init__(
        self, database_url: str, log_path: Path, *, workers: int = 1, env: Mapping[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        environ = checkout_env(
            AUTIONAL_DATABASE_URL=database_url,
            AUTIONAL_JWT_SECRET=TEST_SECRET,
            AUTIONAL_JWT_ISSUER=TEST_ISSUER,
            AUTIONAL_JWT_AUDIENCE=TEST_AUDIENCE,
            **(env or {}),
        )
        command = [sys.executable, "-m", "autional_sessions", "serve", "--port", str(self.port)]
        command += ["--workers", str(workers), "--log-level", "info"]
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, env=environ, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self) -> None:
        """Until the server answers, or fail with its log after READY_SECONDS."""
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/openapi.json", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"server not ready after {READY_SECONDS}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> set[int]:
        """The pids of the processes that logged "Started server process [pid]" (uvicorn's workers)."""
        return {int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", self.log())}

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(timeout=5)


@contextlib.contextmanager
def running_server(database_url: str, log_path: Path, **kwargs) -> Iterator[Server]:
    server = Server(database_url, log_path, **kwargs)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def serving(app: ASGIApp) -> Iterator[str]:
    """`app` behind uvicorn on a free port, in a thread of this process."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), "uvicorn started")
    assert server.started, "uvicorn stopped before it started"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


class TcpProxy:
    """Forwards 127.0.0.1:port to a target, until told to cut.

    `cut("refuse")` drops every live connection and closes each new one at once (a server that went
    away); `cut("blackhole")` drops every live connection and accepts new ones but never answers (an
    unreachable host); `cut("stall")` keeps every connection open but lets nothing through, either way
    (a frozen server: its host still acknowledges every packet); `restore()` forwards again.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)  # so that close() is noticed by the accept loop
        self.port = self._listener.getsockname()[1]
        self._mode = "forward"
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def cut(self, mode: str) -> None:
        assert mode in ("refuse", "blackhole", "stall")
        with self._lock:
            self._mode = mode
            if mode == "stall":
                return
            live, self._sockets = self._sockets, set()
        for sock in live:
            _drop(sock)

    def url_for(self, database_url: str) -> str:
        """`database_url` with its host and port replaced by this proxy's."""
        parts = urlparse(database_url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"127.0.0.1:{self.port}"
        return parts._replace(netloc=f"{credentials}@{netloc}" if credentials else netloc).geturl()

    def restore(self) -> None:
        with self._lock:
            self._mode = "forward"

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self._listener.close()
        self.cut("refuse")

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            with self._lock:
                mode = self._mode
                if mode in ("blackhole", "stall"):
                    self._sockets.add(client)  # held open, never answered
                    continue
            if mode == "refuse":
                _drop(client)
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=3)
            except OSError:
                _drop(client)
                continue
            # Blocking from here on: a quiet connection (an idle pooled one) must stay open.
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                self._sockets.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if self._mode != "stall":  # stalled: taken off the wire, never delivered
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            _drop(src)
            _drop(dst)


def _drop(sock: socket.socket) -> None:
    # shutdown wakes a thread blocked in recv on this socket; close alone would not.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
