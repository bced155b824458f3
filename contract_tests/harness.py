"""Building blocks of the contract suite: its settings, who each case is, and what it saw.

Everything here serves both ways of running the suite (in process and against a deployment), so the two
cannot drift apart: the same settings file, the same contract, the same checks, the same ledger.
"""

from __future__ import annotations

import copy
import functools
import tomllib
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from jsonschema import Draft4Validator
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.schemas import OpenApiSchema

from autional_sessions.spec import HTTP_METHODS, load_spec, project_file

SETTINGS_FILE = "schemathesis.toml"
# Settings of the Schemathesis CLI that pin one identity for every request; the suite gives each case its
# own user id and token instead.
_IDENTITY_SETTINGS = ("parameters", "headers")


def load_settings(max_examples: int | None = None) -> SchemathesisConfig:
    """schemathesis.toml, the settings CLI users run with, minus the identity it pins."""
    with project_file(SETTINGS_FILE).open("rb") as f:
        data = tomllib.load(f)
    for key in _IDENTITY_SETTINGS:
        data.pop(key, None)
    if max_examples is not None:
        data.setdefault("generation", {})["max-examples"] = max_examples
    return SchemathesisConfig.from_dict(data)


# What the suite's auth provider puts in a case: Schemathesis draws its examples and coverage cases when
# pytest collects the test, before any fixture has said where the suite points and with which key tokens
# are signed, so the real token is put in just before the case is sent (`Target.prepare`).
PENDING_TOKEN = "token-of-the-user-in-the-path"


def load_contract(config: SchemathesisConfig) -> OpenApiSchema:
    """openapi.yaml itself, not what a server serves as its spec: the server is what is under test.

    Every case Schemathesis generates with credentials gets the pending token; it still sends its own cases
    without a token or with a broken one, and its `ignored_auth` check repeats successful requests without
    a token and with an invalid one.
    """
    schema = schemathesis.openapi.from_dict(copy.deepcopy(load_spec()), config=config)

    class PendingBearerToken:
        def get(self, _case: Any, _context: Any) -> str:
            return PENDING_TOKEN

        def set(self, case: Any, token: str, _context: Any) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}

    schema.auth(refresh_interval=None)(PendingBearerToken)
    return schema


def documented_statuses(spec: Mapping[str, Any] | None = None) -> dict[str, set[int]]:
    """Each operation's label (`GET /path`) and the statuses its responses document."""
    return {
        f"{method.upper()} {path}": {int(status) for status in operation["responses"] if status.isdigit()}
        for method, path, operation in _operations(spec or load_spec())
    }


def required_statuses(*, in_process: bool) -> dict[str, set[int]]:
    """The documented statuses a whole run of the schema tests must have produced: all of them, but for
    those it cannot reach."""
    # Schemathesis sends no query parameter to an operation that declares none, so the probes' 400 (an
    # unknown parameter) is never produced here; tests/integration/test_probes.py proves it.
    documented = {
        label: statuses - ({400} if label in ("GET /healthz", "GET /readyz") else set())
        for label, statuses in documented_statuses().items()
    }
    if in_process:
        # In process the outage is injected per user; a probe names no user, so its 503 is proven by
        # tests/integration/test_probes.py instead, with the whole store down.
        return {
            label: statuses - ({503} if label == "GET /readyz" else set())
            for label, statuses in documented.items()
        }
    # Against a deployment the suite has one user's token and no way to inject a fault: every other user
    # id is a 403 before any lookup, so no user is ever unknown (404), and neither 500 nor 503 can be
    # provoked. A 429 comes only from a deployment with a rate limit the run happens to exhaust, and a
    # 204 only while the user still has an active session for a link to name.
    by_operation = {
        "listUserSessions": {404, 429, 500, 503},
        "revokeOtherSessions": {404, 429, 500, 503},
        "revokeSession": {204, 429, 500, 503},
        "checkReadiness": {503},
    }
    unreachable = {
        f"{method.upper()} {path}": by_operation.get(operation.get("operationId", ""), set())
        for method, path, operation in _operations(load_spec())
    }
    return {label: statuses - unreachable.get(label, set()) for label, statuses in documented.items()}


def _operations(spec: Mapping[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method, path, operation


@dataclass(frozen=True)
class Target:
    """What the suite is pointed at, and who each of its cases is."""

    known_users: Sequence[str]  # users that exist: most generated user ids are steered onto them
    token_for: Callable[[str], str]  # the bearer token to send, by the user id in the case's path
    app: Any = None  # an ASGI app to call in process, or
    base_url: str | None = None  # the deployment's base URL
    fault_users: Sequence[str] = ()  # users whose database fails on purpose (in process only)
    # The session ids of each known user (in process only): generated ids are steered onto them too.
    known_sessions: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # Puts the data back as seeded (in process only), so each sequence of the stateful phase starts with
    # sessions to list and revoke, whatever the sequences before it revoked.
    reset: Callable[[], None] | None = None

    def transport(self) -> dict[str, Any]:
        return {"base_url": self.base_url} if self.base_url else {}

    def prepare(self, case: Any) -> None:
        """Aim the case at the target, steer its user id onto a known user, and give it its token."""
        # On the operation and its schema, not in `call`'s arguments: the requests some checks send on their
        # own (the probes of `ignored_auth`) go through the schema's transport to the operation's app.
        case.operation.app = case.operation.schema.app = self.app
        path = case.path_parameters or {}
        user_id = path.get("user_id")
        if (
            isinstance(user_id, str)
            and user_id not in self.known_users  # a known user (say one a link carried over) stays
            and all(v.is_valid(user_id) for v in _user_id_validators())
        ):
            # A valid id is kept or swapped for a known user, by a hash of the id; an invalid id stays, so
            # negative cases stay so.
            path["user_id"] = _steer(user_id, self.known_users)
        session_id = path.get("session_id")
        sessions = self.known_sessions.get(str(path.get("user_id")), ())
        if (
            isinstance(session_id, str)
            and session_id not in sessions  # a real id, say one a link took from a list: kept
            and sessions
            and all(v.is_valid(session_id) for v in _session_id_validators())
        ):
            path["session_id"] = _steer(session_id, sessions)
        headers = case.headers or {}
        if headers.get("Authorization") == f"Bearer {PENDING_TOKEN}":
            headers["Authorization"] = f"Bearer {self.token_for(str(path.get('user_id', '')))}"


def _steer(value: str, known: Sequence[str]) -> str:
    """`value` or one of `known`, by a hash of `value`: as deterministic (and as shrinkable) as the value
    itself; one slot more than there are known values keeps the generated one (say a user that does
    not exist)."""
    slot = zlib.crc32(value.encode()) % (len(known) + 1)
    return known[slot] if slot < len(known) else value


@functools.cache
def _user_id_validators() -> list[Draft4Validator]:
    return [Draft4Validator(parameter["schema"]) for parameter in _path_parameters("user_id")]


@functools.cache
def _session_id_validators() -> list[Draft4Validator]:
    return [Draft4Validator(parameter["schema"]) for parameter in _path_parameters("session_id")]


def _path_parameters(name: str) -> list[dict[str, Any]]:
    spec = load_spec()
    found = []
    for _method, _path, operation in _operations(spec):
        for parameter in operation.get("parameters", []):
            if "$ref" in parameter:  # '#/components/parameters/Name'
                parameter = spec["components"]["parameters"][parameter["$ref"].rsplit("/", 1)[1]]
            if parameter["name"] == name and parameter["in"] == "path":
                found.append(parameter)
    return found


class StatusLedger:
    """Which (operation, status) pairs the suite produced and validated, and how often."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, int]] = Counter()

    def record(self, label: str, status: int) -> None:
        self.counts[(label, status)] += 1

    def missing(self, required: Mapping[str, Iterable[int]]) -> list[tuple[str, int]]:
        return sorted(
            (label, status)
            for label, statuses in required.items()
            for status in statuses
            if (label, status) not in self.counts
        )

    def table(self, documented: Mapping[str, set[int]], required: Mapping[str, Iterable[int]]) -> str:
        """The pairs seen, and each documented one that was not, marked required or optional."""
        required_pairs = {(label, status) for label, statuses in required.items() for status in statuses}
        documented_pairs = {(label, status) for label, statuses in documented.items() for status in statuses}
        lines = ["operation                                         status  responses validated"]
        for label, status in sorted(self.counts.keys() | documented_pairs):
            count = self.counts.get((label, status), 0)
            if count:
                note = str(count)
            elif (label, status) in required_pairs:
                note = "0  MISSING (required)"
            else:
                note = "0  not seen (optional)"
            lines.append(f"{label:<50}{status:<8}{note}")
        return "\n".join(lines)
