"""Where the contract suite points: the in-process app on a seeded database, or a live deployment.

In process (the default, in `make test`, and `autional-sessions contract-test` without --url): the app
from the fixtures of autional_sessions.testing (which the caller loads as a plugin), on a temporary
database seeded with users usr_0000000 .. usr_0000005; each case is signed for the user in its path, so
cases reach the handler. Each of those users plays a part: usr_0000000 and usr_0000001 list their sessions
(200), usr_0000002's queries fail with an unexpected database error (500, injected under the app),
usr_0000003's sessions are asked for with usr_0000000's token (403), usr_0000004's queries fail as
they do when the database is unreachable (503, injected likewise), and usr_0000005 has spent its rate
limit before the run starts (429; the limit is far above what the run asks of anyone else); ids of
nobody (404) still turn up.

Against a deployment: `--contract-url URL --contract-token TOKEN --contract-user-id USER_ID` (what
`autional-sessions contract-test` passes). The token is sent as is; generated ids often name USER_ID.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from .harness import StatusLedger, Target, documented_statuses

SEEDED_USERS = 6
# Far above what one run asks of any user or of the test client's one address.
RATE_LIMIT = "100000/hour"
SESSIONS_PER_USER = 25
_LEDGER = pytest.StashKey[StatusLedger]()
_PARTIAL = pytest.StashKey[bool]()
_GATE = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("contract", "contract suite (contract_tests) against a live deployment")
    group.addoption("--contract-url", metavar="URL", help="base URL of the deployment to test")
    group.addoption("--contract-token", metavar="TOKEN", help="a bearer token for --contract-user-id")
    group.addoption("--contract-user-id", metavar="USER_ID", help="the user the token belongs to")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_LEDGER] = StatusLedger()
    config.stash[_PARTIAL] = False


def pytest_deselected(items: list[pytest.Item]) -> None:
    # With -k, --lf or a node id, part of the suite did not run: which statuses it produced says nothing
    # about the contract, so the gate below is not applied.
    if any(item.path.name == "test_contract.py" for item in items):
        items[0].config.stash[_PARTIAL] = True


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    ledger = config.stash.get(_LEDGER, None)
    if ledger is None or not ledger.counts:
        return
    terminalreporter.write_sep("=", "contract suite: (operation, status) pairs produced and validated")
    terminalreporter.write_line(ledger.table(documented_statuses(), required(config)))
    gate = config.stash.get(_GATE, None)
    if gate:
        terminalreporter.write_line(gate, red=True, bold=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The run's gate: when the whole suite ran (no test of it deselected, not split over workers), every
    documented status it can reach must have been produced and validated by one of its tests. No test
    depends on another for this: each stands alone, and the gate looks at what they all saw."""
    config = session.config
    ledger = config.stash.get(_LEDGER, None)
    if ledger is None or not ledger.counts or config.stash.get(_PARTIAL, False):
        return
    if hasattr(config, "workerinput"):  # a pytest-xdist worker sees only its share of the cases
        return
    missing = ledger.missing(required(config))
    if missing:
        config.stash[_GATE] = "documented but never produced and validated: " + ", ".join(
            f"{label} {status}" for label, status in missing
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def live_url(config: pytest.Config) -> str | None:
    return config.getoption("contract_url", default=None)


def required(config: pytest.Config) -> dict[str, set[int]]:
    """The documented statuses the run must have produced: all of them, but for those it cannot reach."""
    # Schemathesis sends no query parameter to an operation that declares none, so the probes' 400 (an
    # unknown parameter) is never produced here; tests/integration/test_probes.py proves it.
    documented = {
        label: statuses - ({400} if label in ("GET /healthz", "GET /readyz") else set())
        for label, statuses in documented_statuses().items()
    }
    if not live_url(config):
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
    unreachable = {
        "GET /sessions/user/{user_id}/sessions": {404, 429, 500, 503},
        "POST /sessions/user/{user_id}/sessions/revocations": {404, 429, 500, 503},
        "DELETE /sessions/user/{user_id}/sessions/{session_id}": {204, 429, 500, 503},
        "GET /readyz": {503},
    }
    return {label: statuses - unreachable.get(label, set()) for label, statuses in documented.items()}


@pytest.fixture(scope="session")
def status_ledger(pytestconfig: pytest.Config) -> StatusLedger:
    return pytestconfig.stash[_LEDGER]


@pytest.fixture
def contract_target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """Aim the suite's contract at the deployment named by the options, or else at the in-process app."""
    config = request.config
    url = live_url(config)
    if url:
        token, user = config.getoption("contract_token"), config.getoption("contract_user_id")
        if not token or not user:
            pytest.fail("--contract-url needs --contract-token and --contract-user-id", pytrace=False)
        yield Target(known_users=[user], token_for=lambda _user_id: token, base_url=url)
        return

    # The server's modules, imported only here: against a deployment the suite needs no server code
    # and no database driver (the `contract` extra alone).
    from autional_sessions.db.seed import seed, user_id
    from autional_sessions.db.store import open_store
    from autional_sessions.http.app import create_app
    from autional_sessions.security.rate_limiter import RateLimits

    from .faults import (
        FaultInjectingStore,
        unavailable_error,
        unexpected_error,
    )

    # A fresh app on the emptied, migrated test database of this run's engine (the root conftest's),
    # whose store fails on purpose for the fault users.
    database = request.getfixturevalue("database")
    settings = request.getfixturevalue("settings")
    make_token = request.getfixturevalue("make_token")
    seed(database, SEEDED_USERS, SESSIONS_PER_USER)
    intruder, fault_user, intruded, outage_user = user_id(0), user_id(2), user_id(3), user_id(4)
    throttled = user_id(5)
    store = FaultInjectingStore(
        open_store(settings), {fault_user: unexpected_error, outage_user: unavailable_error}
    )
    rate_limits = RateLimits(RATE_LIMIT)
    asyncio.run(rate_limits.check("sub", throttled, cost=rate_limits.limit))
    yield Target(
        known_users=[user_id(n) for n in range(SEEDED_USERS)],
        known_sessions={
            user_id(n): [f"sess_{n:07d}_{s:03d}" for s in range(SESSIONS_PER_USER)]
            for n in range(SEEDED_USERS)
        },
        token_for=lambda path_user: make_token(intruder if path_user == intruded else path_user),
        app=create_app(settings, store=store, rate_limits=rate_limits),
        reset=lambda: seed(database, SEEDED_USERS, SESSIONS_PER_USER),
        fault_users=(fault_user, outage_user),
    )
