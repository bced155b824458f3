"""The contract suite: every operation in openapi.yaml, driven by Schemathesis, every check on.

The examples, coverage and fuzzing phases of schemathesis.toml generate the cases; each response goes
through every check Schemathesis has (schemathesis.toml enables them all). The last test fails when a
documented status was never produced and validated. Together they are the catalogue's `schema` check;
every response they see is handed on to the problem and header checks, which run after them.

Generation is derandomized with no example database, so the same command generates the same cases: a red
`make test` is red again when run again, and each failure prints a curl line for its one case. (Hypothesis
also draws on constants in the loaded code, so running fewer test modules can generate other cases.)
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from .deployment import Observed, from_schemathesis
from .harness import (
    StatusLedger,
    Target,
    documented_statuses,
    load_contract,
    load_settings,
    required_statuses,
)

pytestmark = pytest.mark.check("schema")

# Read at import, because Schemathesis builds its tests at collection: CONTRACT_MAX_EXAMPLES=2000 make test
# raises the fuzzing budget (schemathesis.toml sets the default).
_budget = os.environ.get("CONTRACT_MAX_EXAMPLES")
# Sequences of the stateful phase (each a few steps long, and its slowest part against a deployment): 60,
# or half a smaller fuzzing budget (at least 10), which keeps contract-test's default run within a minute.
STATEFUL_EXAMPLES = min(60, max(10, int(_budget) // 2)) if _budget else 60
schema = load_contract(load_settings(max_examples=int(_budget) if _budget else None))


@schema.parametrize()
# One app on one seeded database serves every generated case of a test: sharing the function-scoped
# fixture across cases is the intent (revocations only ever leave the data in a documented state).
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_responses_keep_the_contract(
    case, contract_target: Target, status_ledger: StatusLedger, observed: Observed
) -> None:
    contract_target.prepare(case)
    response = case.call(**contract_target.transport())
    observed.add(from_schemathesis(response))
    case.validate_response(response, excluded_checks=_excluded(case, contract_target))
    _record(case, response, contract_target, status_ledger)


def test_link_sequences_keep_the_contract(
    contract_target: Target, status_ledger: StatusLedger, observed: Observed
) -> None:
    """The stateful phase: sequences that follow the spec's links, list -> revoke -> list, every step's
    response checked like any other case."""
    followed: list[str] = []

    class Sequences(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            if contract_target.reset is not None:
                contract_target.reset()

        def before_call(self, case: Any) -> None:
            contract_target.prepare(case)

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return contract_target.transport()

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            observed.add(from_schemathesis(response))
            case.validate_response(
                response, excluded_checks=_excluded(case, contract_target), transport_kwargs=kwargs
            )
            _record(case, response, contract_target, status_ledger)
            followed.append(f"{case.method.upper()} {case.operation.path} {response.status_code}")

    Sequences.run(
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    assert followed, "the state machine sent nothing: the spec's links lead nowhere"
    if not contract_target.base_url:
        # In process every user has sessions to revoke, so some sequence must have revoked one through a
        # link (a deployment's user may have none left).
        assert any(step.endswith(" 204") for step in followed), "\n".join(followed)


def _excluded(case: Any, target: Target) -> list | None:
    # The users whose database fails on purpose: a 5xx there is the point, not a failure. Every other
    # check still applies to them, and the 5xx must be a documented problem response (500 or 503).
    faulty = (case.path_parameters or {}).get("user_id") in target.fault_users
    return [not_a_server_error] if faulty else None


def _record(case: Any, response: Any, target: Target, ledger: StatusLedger) -> None:
    if (case.path_parameters or {}).get("user_id") in target.fault_users and response.status_code >= 500:
        assert response.status_code in {500, 503}, f"an injected fault gave {response.status_code}"
    ledger.record(f"{response.request.method} {case.operation.path}", response.status_code)


def test_every_documented_status_was_produced(
    request: pytest.FixtureRequest, status_ledger: StatusLedger
) -> None:
    """The gate of a whole run: every documented status the schema tests can reach was produced and
    validated by one of them. It judges only a whole run: with part of the schema tests (a node id, -k,
    pytest-xdist's share) it has nothing to judge."""
    ran = {
        item.originalname for item in request.session.items if getattr(item, "module", None) is request.module
    }
    cases = [
        item
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_responses_keep_the_contract"
    ]
    if (
        hasattr(request.config, "workerinput")
        or len(cases) != len(documented_statuses())
        or "test_link_sequences_keep_the_contract" not in ran
    ):
        pytest.skip("part of the schema tests ran: a gate of the whole run has nothing to judge")
    missing = status_ledger.missing(required_statuses(in_process=not contract_target_url(request)))
    assert not missing, "documented but never produced and validated: " + ", ".join(
        f"{label} {status}" for label, status in missing
    )


def contract_target_url(request: pytest.FixtureRequest) -> str | None:
    return request.config.getoption("contract_url", default=None)
