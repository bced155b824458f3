"""An ASGI proxy in front of the real app that gives it exactly one bug at a time.

A fault is an async function `fault(request, proxy) -> Response`: it may rewrite the request before
`proxy.forward` hands it to the real app, rewrite the response after, make requests of its own to the
app, or answer by itself. With the test issuer's key it can also "launder" a token the real server would
refuse into one it accepts, which is what a deployment with that bug does with the original token.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import re
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode

import jwt
from jwt.warnings import InsecureKeyLengthWarning
from starlette.types import ASGIApp, Receive, Scope, Send

from autional_sessions.testing import TEST_AUDIENCE, TEST_ISSUER, TEST_SECRET

LIST_PREFIX = "/sessions/user/"


class _Headers:
    """Header access of a request or a response: `headers` holds (name in lower case, value) pairs."""

    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    def with_header(self, name: str, value: str | None) -> Self:
        """A copy with `name` set to `value` (None: without it)."""
        headers = tuple((k, v) for k, v in self.headers if k != name)
        return dataclasses.replace(self, headers=headers + (((name, value),) if value is not None else ()))


@dataclasses.dataclass(frozen=True)
class Request(_Headers):
    scope: Scope  # the original one: requests of the fault's own are built from it
    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]  # names in lower case
    body: bytes = b""

    @property
    def token(self) -> str | None:
        scheme, _, value = (self.header("authorization") or "").partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None

    def with_token(self, token: str) -> Request:
        return self.with_header("authorization", f"Bearer {token}")

    @property
    def params(self) -> dict[str, str]:
        return dict(parse_qsl(self.query))

    def with_params(self, **params: Any) -> Request:
        return dataclasses.replace(self, query=urlencode({**self.params, **params}))

    @property
    def segments(self) -> list[str]:
        """`/sessions/user/U/sessions/S` -> ['sessions', 'user', 'U', 'sessions', 'S']."""
        return self.path.strip("/").split("/")

    @property
    def path_user(self) -> str | None:
        parts = self.segments
        return parts[2] if len(parts) >= 4 and parts[:2] == ["sessions", "user"] else None

    @property
    def operation(self) -> str | None:
        """The operationId this request is for, by method and path shape (None: not the API's)."""
        parts = self.segments
        if len(parts) < 4 or parts[:2] != ["sessions", "user"] or parts[3] != "sessions":
            return None
        if len(parts) == 4:
            return "listUserSessions" if self.method == "GET" else None
        if len(parts) == 5:
            if self.method == "POST" and parts[4] == "revocations":
                return "revokeOtherSessions"
            return "revokeSession" if self.method == "DELETE" else None
        return None


@dataclasses.dataclass(frozen=True)
class Response(_Headers):
    status: int
    headers: tuple[tuple[str, str], ...]  # names in lower case
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)

    def with_json(self, document: Any, status: int | None = None) -> Response:
        body = json.dumps(document).encode()
        headers = tuple((k, v) for k, v in self.headers if k != "content-length")
        return Response(status or self.status, (*headers, ("content-length", str(len(body)))), body)

    @property
    def is_problem(self) -> bool:
        return self.status >= 400 and self.body[:1] == b"{"


Fault = Callable[[Request, "FaultProxy"], Awaitable[Response]]


class FaultProxy:
    """The real app, behind whichever fault is switched on (none: the correct deployment)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.fault: Fault | None = None
        self.state: dict[str, Any] = {}  # what a fault remembers between requests (reset per fault)

    def use(self, fault: Fault | None) -> None:
        self.fault = fault
        self.state = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.fault is None:
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            body.extend(message.get("body", b""))
            if not message.get("more_body"):
                break
        request = Request(
            scope=scope,
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]),
            body=bytes(body),
        )
        response = await self.fault(request, self)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers],
            }
        )
        await send({"type": "http.response.body", "body": response.body})

    async def forward(self, request: Request) -> Response:
        """The real app's answer to `request`."""
        scope = {
            **request.scope,
            "method": request.method,
            "path": request.path,
            "raw_path": request.path.encode(),
            "query_string": request.query.encode("latin-1"),
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in request.headers],
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": request.body, "more_body": False}
            return {"type": "http.disconnect"}

        start: dict[str, Any] = {}
        body = bytearray()

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))

        await self.app(scope, receive, send)
        headers = tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in start["headers"])
        return Response(start["status"], headers, bytes(body))

    async def call(
        self, request: Request, method: str, path: str, token: str | None, **params: Any
    ) -> Response:
        """A request of the fault's own to the real app, on the connection of `request`."""
        own = dataclasses.replace(request, method=method, path=path, query=urlencode(params), body=b"")
        own = own.with_header("authorization", f"Bearer {token}" if token else None)
        return await self.forward(own)

    async def all_items(self, request: Request, token: str | None = None) -> list[dict[str, Any]]:
        """Every item of the list `request` asks for, as the real app pages it (most recent first)."""
        items: list[dict[str, Any]] = []
        for page in range(1, 1000):
            response = await self.call(
                request, "GET", request.path, token or request.token, page=page, page_size=100
            )
            assert response.status == 200, response.body
            document = response.json()
            items += document["items"]
            if not document["pagination"]["has_next"]:
                return items
        raise AssertionError("a list of more than 1000 pages")


# Tokens ------------------------------------------------------------------------------------------------
def b64url_json(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A token's header and payload, read without any check; None when it is not shaped like a JWT."""
    parts = token.split(".")
    if len(parts) not in (2, 3):
        return None
    try:
        header, payload = b64url_json(parts[0]), b64url_json(parts[1])
    except ValueError:
        return None
    return (header, payload) if isinstance(header, dict) and isinstance(payload, dict) else None


def signature_verifies(token: str, key: bytes = TEST_SECRET.encode()) -> bool:
    """Whether the token's HMAC signature verifies under `key`, whatever its claims say."""
    try:
        with warnings.catch_warnings():
            # The weak keys of the attacks on kid (empty, a word): PyJWT rightly warns about them.
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            jwt.decode(
                token,
                key,
                algorithms=["HS256", "HS384", "HS512"],
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
    except jwt.InvalidTokenError:
        return False
    return True


def launder(token: str | dict[str, Any], **claims: Any) -> str:
    """A token the real server accepts, with the claims of `token` (or these claims) that matter to it: its
    subject, session and tenant. Keyword arguments override them (None drops one)."""
    payload = dict(unverified(token)[1]) if isinstance(token, str) else dict(token)  # type: ignore[index]
    now = int(time.time())
    kept = {k: payload[k] for k in ("sub", "sid", "tenant_id") if k in payload}
    fresh = {"iat": now - 30, "exp": now + 900, "iss": TEST_ISSUER, "aud": TEST_AUDIENCE, **kept, **claims}
    return jwt.encode({k: v for k, v in fresh.items() if v is not None}, TEST_SECRET, algorithm="HS256")


def problem(request: Request, status: int, name: str, title: str, code: int, detail: str) -> Response:
    """A problem shaped like the server's own (a faulty deployment answering by itself)."""
    sent = request.header("x-request-id") or ""
    request_id = sent if re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", sent) else f"req_{uuid.uuid4()}"
    document = {
        "type": f"/problems/{name}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.path,
        "code": code,
        "i18n_key": "error.internal",
        "request_id": request_id,
        "timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "service": "autional-sessions",
    }
    headers = (
        ("content-type", "application/problem+json"),
        ("cache-control", "no-store"),
        ("x-request-id", request_id),
    )
    return Response(status, headers).with_json(document)
