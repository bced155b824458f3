"""The contract suite: every operation in openapi.yaml, driven by Schemathesis, every check on.

The examples, coverage and fuzzing phases of schemathesis.toml generate the cases; each response goes
through every check Schemathesis has (schemathesis.toml enables them all). The last test fails when a
documented status was never produced and validated.

Generation is derandomized with no example database, so the same command generates the same cases: a red
`make test` is red again when run again, and each failure prints a curl line for its one case. (Hypothesis
also draws on constants in the loaded code, so running fewer test modules can generate other cases.)
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from contract_tests.harness import StatusLedger, Target, load_contract, load_settings

# Read at import, because Schemathesis builds its tests at collection: CONTRACT_MAX_EXAMPLES=2000 make test
# raises the fuzzing budget (schemathesis.toml sets the default).
_budget = os.environ.get("CONTRACT_MAX_EXAMPLES")
schema = load_contract(load_settings(max_examples=int(_budget) if _budget else None))


@schema.parametrize()
# One app on one seeded database serves every generated case: the operation only reads, so sharing the
# function-scoped fixture across cases is the intent.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_responses_keep_the_contract(case, contract_target: Target, status_ledger: StatusLedger) -> None:
    contract_target.prepare(case)
    # The users whose database fails on purpose: a 5xx there is the point, not a failure. Every other
    # check still applies to them, and the 5xx must be a documented problem response (500 or 503).
    faulty = (case.path_parameters or {}).get("user_id") in contract_target.fault_users
    response = case.call_and_validate(
        excluded_checks=[not_a_server_error] if faulty else None, **contract_target.transport()
    )
    if faulty and response.status_code >= 500:
        assert response.status_code in {500, 503}, f"an injected fault gave {response.status_code}"
    status_ledger.record(f"{response.request.method} {case.operation.path}", response.status_code)


def test_every_documented_status_was_produced_and_validated(
    required_statuses: dict[str, set[int]], status_ledger: StatusLedger
) -> None:
    missing = status_ledger.missing(required_statuses)
    assert not missing, "documented but never produced and validated: " + ", ".join(
        f"{label} {status}" for label, status in missing
    )
