"""Throw-away PostgreSQL databases, made and dropped through a server's maintenance database.

The tests' fixtures (`autional_sessions.testing`) and the benchmark (`bench/compare.py`) both need
databases of their own on the one server; they differ only in what a missing server means (a skip, a
failure, a benchmark error), so connection errors (`psycopg.OperationalError`) are theirs to handle.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from urllib.parse import urlsplit

import psycopg


def admin_connection(admin_url: str, *, connect_timeout: int = 3) -> psycopg.Connection:
    """An autocommit connection to the maintenance database: CREATE and DROP DATABASE cannot run inside
    a transaction."""
    conn = psycopg.connect(admin_url, connect_timeout=connect_timeout)
    conn.autocommit = True
    return conn


def database_url(admin_url: str, name: str) -> str:
    """The URL of database `name` on the server of `admin_url`."""
    return urlsplit(admin_url)._replace(path=f"/{name}").geturl()


def create_database(admin_url: str, name: str) -> str:
    """Create database `name` (a name the caller made, never one from outside) and return its URL."""
    with contextlib.closing(admin_connection(admin_url)) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    return database_url(admin_url, name)


def drop_databases(admin_url: str, names: Iterable[str]) -> None:
    """Drop each database, ending its leftover connections first (a worker that outlived its process
    group, a pool not yet closed), which would otherwise block the DROP."""
    with contextlib.closing(admin_connection(admin_url)) as conn, conn.cursor() as cur:
        for name in names:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
