"""The floor: the yardstick's work as a raw ASGI callable, with the fastest libraries Python has for it.

`make bench` measures the project against two servers. The yardstick (../shared/bench/reference_server.py)
is a plain Starlette handler with the standard `json` module and a synchronous driver. This one does the
same work on the same database (the yardstick's, seeded by it) with no framework at all:
one ASGI function, PyJWT's decode (exp, iss, aud, sub required), the user lookup, the count and the page
of active sessions, the same JSON envelope serialized with orjson, `Cache-Control: no-store` and a request
id. On SQLite the statements run on the event loop through `sqlite3`; on PostgreSQL through an asyncpg
pool. What Python can do for this request on this machine: the project's framework, spec validation and
production features are measured against it.

    python bench/floor_server.py --db ref.db --port 8102
    python bench/floor_server.py --db postgresql://postgres@127.0.0.1/bench_ref --port 8102
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sqlite3
import uuid
from typing import Any
from urllib.parse import parse_qsl

import asyncpg
import jwt
import orjson
import uvicorn

SECRET = "reference-bench-secret-0123456789abcdef"
ISSUER, AUDIENCE = "bench-issuer", "bench-audience"
COLUMNS = (
    "id, user_id, tenant_id, status, amr, authenticated_at, created_at, expires_at, "
    "idle_expires_at, last_active_at, ip, geoip, device_id, device_type, user_agent"
)
NAMES = [c.strip() for c in COLUMNS.split(",")]
PREFIX, SUFFIX = "/sessions/user/", "/sessions"
WHERE = "user_id = {0} and status = 'active' and expires_at > {1} and idle_expires_at > {1}"
USER = "select 1 from users where id = {0}"
COUNT = "select count(*) from sessions where " + WHERE
PAGE = f"select {COLUMNS} from sessions where {WHERE} order by last_active_at desc, id desc limit {{2}} offset {{3}}"


class SqliteStore:
    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, check_same_thread=False)
        self.db.execute("pragma journal_mode=wal")
        self.user, self.count = USER.format("?"), COUNT.format("?", "?")
        self.page = PAGE.format("?", "?", "?", "?")

    async def start(self) -> None:
        return None

    async def query(self, uid: str, now: str, size: int, offset: int) -> tuple[int, list] | None:
        db = self.db
        if db.execute(self.user, (uid,)).fetchone() is None:
            return None
        total = db.execute(self.count, (uid, now, now)).fetchone()[0]
        return total, db.execute(self.page, (uid, now, now, size, offset)).fetchall()


class PostgresStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.pool: asyncpg.Pool | None = None
        self.user, self.count = USER.format("$1"), COUNT.format("$1", "$2")
        self.page = PAGE.format("$1", "$2", "$3", "$4")

    async def start(self) -> None:
        self.pool = await asyncpg.create_pool(self.url, min_size=2, max_size=10)

    async def query(self, uid: str, now: str, size: int, offset: int) -> tuple[int, list] | None:
        assert self.pool is not None
        async with self.pool.acquire() as conn:
            if await conn.fetchval(self.user, uid) is None:
                return None
            total = await conn.fetchval(self.count, uid, now)
            return total, await conn.fetch(self.page, uid, now, size, offset)


def make_app(store: SqliteStore | PostgresStore) -> Any:
    async def respond(send: Any, status: int, body: Any, request_id: bytes, problem: bool = False) -> None:
        payload = orjson.dumps(body)
        media = b"application/problem+json" if problem else b"application/json"
        headers = [
            (b"content-type", media),
            (b"content-length", str(len(payload)).encode()),
            (b"cache-control", b"no-store"),
            (b"x-request-id", request_id),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await store.start()
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        auth = request_id = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
            elif name == b"x-request-id":
                request_id = value
        request_id = request_id or f"req_{uuid.uuid4()}".encode()
        path = scope["path"]

        def problem(status: int, detail: str) -> dict:
            return {"type": "about:blank", "status": status, "detail": detail, "instance": path}

        if not (path.startswith(PREFIX) and path.endswith(SUFFIX)) or scope["method"] != "GET":
            return await respond(send, 404, problem(404, "not found"), request_id, True)
        uid = path[len(PREFIX) : -len(SUFFIX)]
        if not auth.startswith(b"Bearer "):
            return await respond(send, 401, problem(401, "missing bearer token"), request_id, True)
        try:
            claims = jwt.decode(
                auth[7:],
                SECRET,
                algorithms=["HS256"],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "sub"]},
            )
        except jwt.PyJWTError as exc:
            return await respond(send, 401, problem(401, str(exc)), request_id, True)
        if claims["sub"] != uid:
            return await respond(send, 403, problem(403, "not this user's token"), request_id, True)
        query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
        try:
            page, size = int(query.get("page", "1")), int(query.get("page_size", "20"))
        except ValueError:
            return await respond(send, 400, problem(400, "page and page_size are integers"), request_id, True)
        if not (1 <= page <= 100000 and 1 <= size <= 100):
            return await respond(send, 400, problem(400, "page or page_size out of range"), request_id, True)
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        found = await store.query(uid, now, size, (page - 1) * size)
        if found is None:
            return await respond(send, 404, problem(404, "user not found"), request_id, True)
        total, rows = found
        pages = math.ceil(total / size)
        body = {
            "code": 0,
            "message": "success",
            "timestamp": now,
            "total": total,
            "items": [dict(zip(NAMES, row, strict=True)) for row in rows],
            "pagination": {
                "page": page,
                "page_size": size,
                "total": total,
                "total_pages": pages,
                "has_next": page < pages,
                "has_prev": page > 1,
            },
        }
        await respond(send, 200, body, request_id)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--db", required=True, help="the yardstick's database: a SQLite path or postgresql:// URL"
    )
    parser.add_argument("--port", type=int, default=8102)
    args = parser.parse_args()
    store = PostgresStore(args.db) if args.db.startswith("postgres") else SqliteStore(args.db)
    uvicorn.run(make_app(store), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
