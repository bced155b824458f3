"""The deployment under test as the hand-written checks see it: who they are, how they call it, what it said.

The checks drive HTTP with httpx directly: they test what a schema cannot say (who may see what, what a
page holds, what a revocation did). Operations are found by `operationId` in openapi.yaml, never by a path
written here, so a deployment of another design of the same contract is tested the same way.
"""

from __future__ import annotations

import functools
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from autional_sessions.spec import HTTP_METHODS, load_spec

from .tokens import Minter

# A user id no deployment has (short, and of the characters a user id may have).
NOBODY = "usr_contract_test_nobody"
# A response body kept for the problem and header checks: enough for any problem, bounded for fuzzing.
_KEPT_BODY = 65536
# A 429 is waited out at most this many times, each at most this long, before its answer counts.
_RATE_LIMIT_RETRIES = 3
_RATE_LIMIT_WAIT = 5.0


@functools.cache
def operation(operation_id: str) -> tuple[str, str]:
    """(METHOD, path template) of the operation with this `operationId` in openapi.yaml."""
    for path, item in load_spec()["paths"].items():
        for method, op in item.items():
            if method in HTTP_METHODS and op.get("operationId") == operation_id:
                return method.upper(), path
    raise LookupError(f"openapi.yaml has no operation {operation_id!r}")


def success_status(operation_id: str) -> int:
    """The one 2xx status the operation documents."""
    method, path = operation(operation_id)
    statuses = [int(s) for s in load_spec()["paths"][path][method.lower()]["responses"] if s.startswith("2")]
    return statuses[0]


def parameter_schema(operation_id: str, name: str) -> dict[str, Any]:
    """The schema of one of the operation's parameters (its default, its bounds)."""
    method, path = operation(operation_id)
    spec = load_spec()
    for parameter in spec["paths"][path][method.lower()].get("parameters", []):
        if "$ref" in parameter:  # '#/components/parameters/Name'
            parameter = spec["components"]["parameters"][parameter["$ref"].rsplit("/", 1)[1]]
        if parameter["name"] == name:
            return parameter["schema"]
    raise LookupError(f"{operation_id} has no parameter {name!r}")


@dataclass
class Exchange:
    """One request the run sent and the response it got, as the report shows them."""

    method: str
    url: str
    request_headers: list[tuple[str, str]]  # only those the suite set: what a curl line needs
    status: int
    headers: httpx.Headers
    body: bytes
    request_body: bytes = b""

    def json(self) -> Any:
        import json

        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def curl(self) -> str:
        parts = ["curl", "-X", self.method]
        for name, value in self.request_headers:
            if name.lower() == "authorization":
                scheme = value.split(" ", 1)[0] if " " in value else ""
                value = f"{scheme} [Filtered]" if scheme else "[Filtered]"
            parts += ["-H", f"{name}: {value}"]
        if self.request_body:
            parts += ["-d", self.request_body.decode("utf-8", "replace")]
        parts.append(self.url)
        return " ".join(shlex.quote(p) for p in parts)

    def summary(self) -> str:
        return f"{self.method} {self.url} -> {self.status}"


@dataclass
class Observed:
    """Every exchange of the run (the checks' own and Schemathesis's), for the problem and header checks."""

    exchanges: list[Exchange] = field(default_factory=list)

    def add(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)


class Deployment:
    """Where the checks point and who they are.

    `user` and `token` are the caller (user A). `other_user` is someone else (user B): given, or when none
    is, a made-up id that exists nowhere. With `minter` (the signing key) the checks mint every token they
    need: for any user, with a `sid`, expired, and so on.
    """

    def __init__(
        self,
        client: httpx.Client,
        *,
        base_url: str,
        user: str,
        token: str | None,
        other_user: str | None = None,
        other_token: str | None = None,
        minter: Minter | None = None,
        in_process: bool = False,
        observed: Observed | None = None,
        reset: Callable[[], None] | None = None,
        probes: Mapping[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.user = user
        self.minter = minter
        self._token = token
        self.other_user_given = other_user is not None
        self.other_user = other_user or NOBODY
        self._other_token = other_token
        self.in_process = in_process
        self.observed = observed if observed is not None else Observed()
        self.reset = reset
        # In process only: users whose requests end in a 500, a 503 or a 429, for the problem checks.
        self.probes = dict(probes or {})

    # Tokens ---------------------------------------------------------------------------------------------
    @property
    def token(self) -> str:
        if self._token is None:
            assert self.minter is not None
            self._token = self.minter.mint(self.user)
        return self._token

    def token_for(self, user: str, **claims: Any) -> str | None:
        """A valid token for `user` (with these claims), or None when the run has no way to make one."""
        if not claims:
            if user == self.user:
                return self.token
            if user == self.other_user and self._other_token:
                return self._other_token
        if self.minter is None:
            return None
        return self.minter.mint(user, **claims)

    @property
    def other_token(self) -> str | None:
        return self.token_for(self.other_user) if self.other_user_given else None

    # HTTP -----------------------------------------------------------------------------------------------
    def url(self, operation_id: str, **path: str) -> tuple[str, str]:
        method, template = operation(operation_id)
        for name, value in path.items():
            template = template.replace("{" + name + "}", quote(str(value), safe=""))
        return method, template

    def call(
        self,
        operation_id: str,
        *,
        token: str | None = None,
        authorization: str | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Sequence[tuple[str, str]] = (),
        **path: str,
    ) -> Exchange:
        """Call an operation by its operationId, with `token` as a bearer token (or a raw Authorization)."""
        method, target = self.url(operation_id, **path)
        if token is not None:
            authorization = f"Bearer {token}"
        return self.send(method, target, authorization=authorization, params=params, headers=headers)

    def send(
        self,
        method: str,
        target: str,
        *,
        authorization: str | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Sequence[tuple[str, str]] = (),
        retry: bool = True,
    ) -> Exchange:
        """Send a request; a 429 is waited out and asked again (unless `retry` is off), a polite client's
        way with a deployment that rate-limits the run."""
        sent = list(headers)
        if authorization is not None:
            sent.append(("Authorization", authorization))
        url = self.base_url + target
        if params:
            url += "?" + "&".join(
                f"{quote(str(k), safe='')}={quote(str(v), safe='')}" for k, v in params.items()
            )
        for attempt in range(_RATE_LIMIT_RETRIES + 1):
            response = self.client.request(method, url, headers=sent)
            exchange = Exchange(
                method=method,
                url=url,
                request_headers=sent,
                status=response.status_code,
                headers=response.headers,
                body=response.content[:_KEPT_BODY],
            )
            self.observed.add(exchange)
            if response.status_code != 429 or attempt == _RATE_LIMIT_RETRIES or self.in_process or not retry:
                return exchange
            # A deployment that rate-limits the run: wait as it asks (within reason), then ask again.
            time.sleep(min(_retry_after(response.headers.get("retry-after")), _RATE_LIMIT_WAIT))
        raise AssertionError("unreachable")

    # The list, as the paging and listing checks walk it -----------------------------------------------
    def list_page(self, user: str, token: str, page: int | None, page_size: int | None) -> Exchange:
        params = {}
        if page is not None:
            params["page"] = page
        if page_size is not None:
            params["page_size"] = page_size
        return self.call("listUserSessions", token=token, params=params, user_id=user)


def _retry_after(value: str | None) -> float:
    try:
        return max(float(value or 1), 0.0)
    except ValueError:
        return 1.0


def from_schemathesis(response: Any) -> Exchange:
    """A Schemathesis response (its public `Response`) as an exchange of the run."""
    request = response.request
    headers = httpx.Headers([(name, value) for name, values in response.headers.items() for value in values])
    body = request.body or b""
    if isinstance(body, str):
        body = body.encode()
    return Exchange(
        method=str(request.method),
        url=str(request.url),
        request_headers=[(k, v) for k, v in request.headers.items() if k.lower() not in _NOISE_HEADERS],
        status=response.status_code,
        headers=headers,
        body=(response.content or b"")[:_KEPT_BODY],
        request_body=body[:_KEPT_BODY],
    )


_NOISE_HEADERS = frozenset({"user-agent", "accept-encoding", "accept", "connection", "content-length"})
