"""Where the contract suite points, who it is there, and how its checks are selected, ordered and reported.

In process (the default, in `make test`, and `autional-sessions contract-test` without --url): the app
from the fixtures of autional_sessions.testing (which the caller loads as a plugin), on a temporary
database seeded with users usr_0000000 .. usr_0000005, with the test settings' signing key, so every check
runs. The hand-written checks are usr_0000000 (user A) and usr_0000001 (user B), on data seeded afresh
before each check. Each seeded user plays a part in the schema tests: usr_0000000 and usr_0000001 list
their sessions (200), usr_0000002's queries fail with an unexpected database error (500, injected under
the app), usr_0000003's sessions are asked for with usr_0000000's token (403), usr_0000004's queries fail
as they do when the database is unreachable (503, injected likewise), and usr_0000005 has spent its rate
limit before the run starts (429; the limit is far above what the run asks of anyone else); ids of nobody
(404) still turn up.

Against a deployment: the `--contract-*` options below, which `autional-sessions contract-test` passes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from . import catalogue
from .deployment import Deployment, Observed
from .harness import StatusLedger, Target, documented_statuses, required_statuses
from .report import Report
from .tokens import Minter, default_algorithm, load_key

SEEDED_USERS = 6
# Far above what one run asks of any user or of the test client's one address.
RATE_LIMIT = "100000/hour"
SESSIONS_PER_USER = 25
# What the in-process deployment's users are for (see the module's docstring).
USER_A, USER_B, FAULT_USER, INTRUDED, OUTAGE_USER, THROTTLED = range(SEEDED_USERS)
_LEDGER = pytest.StashKey[StatusLedger]()
_REPORT = pytest.StashKey[Report]()
_OBSERVED = pytest.StashKey[Observed]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("contract", "contract suite (contract_tests) against a live deployment")
    group.addoption("--contract-url", metavar="URL", help="base URL of the deployment to test")
    group.addoption("--contract-token", metavar="TOKEN", help="a bearer token for --contract-user-id")
    group.addoption("--contract-user-id", metavar="USER_ID", help="the user the token belongs to")
    group.addoption("--contract-other-token", metavar="TOKEN", help="a bearer token of a second user")
    group.addoption("--contract-other-user-id", metavar="USER_ID", help="the second user")
    group.addoption("--contract-signing-key-file", metavar="PATH", help="the HMAC secret or PEM private key")
    group.addoption("--contract-algorithm", metavar="ALG", help="the signing key's JWT algorithm")
    group.addoption("--contract-issuer", metavar="ISS", help="the iss of the tokens the deployment accepts")
    group.addoption("--contract-audience", metavar="AUD", help="the aud of the tokens the deployment accepts")
    group.addoption(
        "--contract-select", metavar="GLOB", action="append", default=[], help="run only these check ids"
    )
    group.addoption("--contract-report-json", metavar="PATH", help="write the report as JSON there")
    group.addoption("--contract-junit-xml", metavar="PATH", help="write the report as JUnit XML there")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "check(id): the contract check (catalogue id) this test is part of")
    if unknown := catalogue.unmatched(config.getoption("contract_select", default=[])):
        raise pytest.UsageError("--select matches no check: " + ", ".join(unknown))
    config.stash[_LEDGER] = StatusLedger()
    config.stash[_OBSERVED] = Observed()
    config.stash[_REPORT] = Report(
        live_url(config) or "in process", catalogue.selected(config.getoption("contract_select", default=[]))
    )


def live_url(config: pytest.Config) -> str | None:
    return config.getoption("contract_url", default=None)


def check_id(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("check")
    return marker.args[0] if marker else None


def pytest_ignore_collect(collection_path: Any, config: pytest.Config) -> bool | None:
    # Schemathesis draws the schema's examples when pytest collects its tests: not when it is not selected.
    if collection_path.name == "test_contract.py" and "schema" not in catalogue.selected(
        config.getoption("contract_select", default=[])
    ):
        return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The catalogue's order (read-only checks, revocations, schema, problems and headers last), and a skip
    for the checks `--contract-select` leaves out."""
    chosen = catalogue.selected(config.getoption("contract_select", default=[]))
    positions = [n for n, item in enumerate(items) if check_id(item)]
    ordered = sorted((items[n] for n in positions), key=lambda item: catalogue.ORDER[check_id(item)])
    for n, item in zip(positions, ordered, strict=True):
        items[n] = item
        if check_id(item) not in chosen:
            item.add_marker(pytest.mark.skip(reason="not selected"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    identifier = check_id(item)
    if identifier and identifier in catalogue.BY_ID:
        item.config.stash[_REPORT].record(identifier, report, call)
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    ledger = config.stash.get(_LEDGER, None)
    if ledger is not None and ledger.counts:
        terminalreporter.write_sep("=", "contract suite: (operation, status) pairs produced and validated")
        terminalreporter.write_line(
            ledger.table(documented_statuses(), required_statuses(in_process=not live_url(config)))
        )
    report = config.stash.get(_REPORT, None)
    if report is None or not _ran_any_check(config):
        return
    terminalreporter.write_sep("=", "contract checks")
    for line in report.lines():
        red = line.startswith("FAILED")
        terminalreporter.write_line(line, red=red, bold=red)


def _ran_any_check(config: pytest.Config) -> bool:
    report = config.stash[_REPORT]
    return any(v.results for v in report.verdicts.values())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    report = config.stash.get(_REPORT, None)
    if report is None or hasattr(config, "workerinput"):
        return
    if path := config.getoption("contract_report_json", default=None):
        report.write_json(path)
    if path := config.getoption("contract_junit_xml", default=None):
        report.write_junit(path)


# Fixtures -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def status_ledger(pytestconfig: pytest.Config) -> StatusLedger:
    return pytestconfig.stash[_LEDGER]


@pytest.fixture(scope="session")
def observed(pytestconfig: pytest.Config) -> Observed:
    """Every exchange of the run, for the problem and header checks."""
    return pytestconfig.stash[_OBSERVED]


@pytest.fixture(scope="session")
def deployment(request: pytest.FixtureRequest, observed: Observed) -> Iterator[Deployment]:
    """The deployment the hand-written checks call: the one the options name, or the in-process app."""
    config = request.config
    url = live_url(config)
    if url:
        yield from _live_deployment(config, url, observed)
        return
    from starlette.testclient import TestClient

    from autional_sessions.db.models import database_proxy
    from autional_sessions.db.seed import seed, user_id
    from autional_sessions.testing import TEST_AUDIENCE, TEST_ISSUER, TEST_SECRET

    database = request.getfixturevalue("migrated_database")
    settings = request.getfixturevalue("settings")

    def reset() -> None:
        """The seeded data, afresh: each in-process check starts from it, whatever the one before did."""
        database_proxy.initialize(database)
        with database.connection_context():
            database.execute_sql("DELETE FROM sessions")
            database.execute_sql("DELETE FROM users")
        seed(database, SEEDED_USERS, SESSIONS_PER_USER)

    reset()
    app = _in_process_app(settings)
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as client:
        yield Deployment(
            client,
            base_url="http://testserver",
            user=user_id(USER_A),
            token=None,
            other_user=user_id(USER_B),
            minter=Minter(TEST_SECRET.encode(), "HS256", TEST_ISSUER, TEST_AUDIENCE),
            in_process=True,
            observed=observed,
            reset=reset,
            probes={
                "unexpected_error": user_id(FAULT_USER),
                "unavailable": user_id(OUTAGE_USER),
                "rate_limited": user_id(THROTTLED),
            },
        )


def _live_deployment(config: pytest.Config, url: str, observed: Observed) -> Iterator[Deployment]:
    import httpx

    option = config.getoption
    user = option("contract_user_id")
    token = option("contract_token")
    minter = None
    if key_file := option("contract_signing_key_file"):
        key = load_key(key_file)
        minter = Minter(
            key,
            option("contract_algorithm") or default_algorithm(key),
            option("contract_issuer"),
            option("contract_audience"),
        )
    if not user or not (token or minter):
        pytest.fail(
            "--contract-url needs --contract-user-id and --contract-token (or the signing key)", pytrace=False
        )
    with httpx.Client(timeout=30.0, follow_redirects=False) as client:
        yield Deployment(
            client,
            base_url=url,
            user=user,
            token=token,
            other_user=option("contract_other_user_id"),
            other_token=option("contract_other_token"),
            minter=minter,
            observed=observed,
        )


@pytest.fixture(autouse=True)
def _fresh_data(request: pytest.FixtureRequest) -> None:
    """In process, each hand-written check starts on the seeded data (the schema tests reseed their own)."""
    identifier = check_id(request.node)
    if identifier is None or identifier == "schema":
        return
    deployment: Deployment = request.getfixturevalue("deployment")
    if deployment.reset is not None:
        deployment.reset()


def _in_process_app(settings: Any) -> Any:
    """Our app on the test database, whose store fails on purpose for the fault users, and whose rate limit
    the throttled user has spent."""
    from autional_sessions.db.seed import user_id
    from autional_sessions.db.store import open_store
    from autional_sessions.http.app import create_app
    from autional_sessions.security.rate_limiter import RateLimits

    from .faults import FaultInjectingStore, unavailable_error, unexpected_error

    store = FaultInjectingStore(
        open_store(settings),
        {user_id(FAULT_USER): unexpected_error, user_id(OUTAGE_USER): unavailable_error},
    )
    rate_limits = RateLimits(RATE_LIMIT)
    asyncio.run(rate_limits.check("sub", user_id(THROTTLED), cost=rate_limits.limit))
    return create_app(settings, store=store, rate_limits=rate_limits)


@pytest.fixture
def contract_target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """Aim the schema tests at the deployment named by the options, or else at the in-process app."""
    config = request.config
    url = live_url(config)
    if url:
        deployment: Deployment = request.getfixturevalue("deployment")
        token = deployment.token
        yield Target(known_users=[deployment.user], token_for=lambda _user_id: token, base_url=url)
        return

    from autional_sessions.db.seed import seed, user_id

    # A fresh app on the emptied, migrated test database of this run's engine (the root conftest's).
    database = request.getfixturevalue("database")
    settings = request.getfixturevalue("settings")
    make_token = request.getfixturevalue("make_token")
    seed(database, SEEDED_USERS, SESSIONS_PER_USER)
    intruder, intruded = user_id(USER_A), user_id(INTRUDED)
    yield Target(
        known_users=[user_id(n) for n in range(SEEDED_USERS)],
        known_sessions={
            user_id(n): [f"sess_{n:07d}_{s:03d}" for s in range(SESSIONS_PER_USER)]
            for n in range(SEEDED_USERS)
        },
        token_for=lambda path_user: make_token(intruder if path_user == intruded else path_user),
        app=_in_process_app(settings),
        reset=lambda: seed(database, SEEDED_USERS, SESSIONS_PER_USER),
        fault_users=(user_id(FAULT_USER), user_id(OUTAGE_USER)),
    )
