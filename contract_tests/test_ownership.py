"""Ownership checks (OWASP API1:2023 Broken Object Level Authorization, API5:2023 Broken Function Level
Authorization): a user reaches only their own sessions, and is told so before anything is looked up."""

from __future__ import annotations

import secrets

import pytest

from .deployment import NOBODY, Deployment
from .expect import Findings, problem_violations, skip
from .listing import all_ids, second_user

check = pytest.mark.check
NOBODYS_SESSION = "sess_contract_test_nobody"


@check("ownership.list-other")
def test_nobody_lists_another_users_sessions(deployment: Deployment) -> None:
    findings = Findings()
    a, b = deployment.user, deployment.other_user
    attempts = [
        (f"{a}'s token on {b}'s list", deployment.token, b, {}),
        (f"{a}'s token on {b}'s list, page_size 100", deployment.token, b, {"page": 1, "page_size": 100}),
    ]
    if deployment.other_user_given:
        # 403 before any lookup: a made-up user gets the same answer as a real one, so nobody can probe.
        nobody = NOBODY
        attempts.append(
            (f"{a}'s token on the list of {nobody}, who does not exist", deployment.token, nobody, {})
        )
        if (other_token := deployment.other_token) is not None:
            attempts.append((f"{b}'s token on {a}'s list", other_token, a, {}))
    if deployment.minter is not None:
        stranger = f"usr_contract_{secrets.token_hex(4)}"
        attempts.append(
            (
                f"a valid token of {stranger}, who does not exist, on {a}'s list",
                deployment.minter.mint(stranger),
                a,
                {},
            )
        )
    for label, token, user, params in attempts:
        exchange = deployment.call("listUserSessions", token=token, params=params, user_id=user)
        findings.extend(problem_violations(exchange, 403), exchange, prefix=f"{label}: ")
    # The same list under another spelling of its path, which a router may take and an ownership rule that
    # matches the path exactly (or compares ids ignoring case) lets through: never a list (a redirect to
    # the canonical path, a 403 or a 404 are all fine).
    method, path = deployment.url("listUserSessions", user_id=b)
    _, own_path = deployment.url("listUserSessions", user_id=a.swapcase())
    spellings = [
        (f"{a}'s token on {b}'s list with a trailing slash", path + "/"),
        (f"{a}'s token on {b}'s list with the id percent-encoded", path.replace(b, _percent_encoded(b), 1)),
    ]
    if a.swapcase() != a:
        spellings.append((f"{a}'s token on the list of {a.swapcase()} (its id in another case)", own_path))
    for label, target in spellings:
        exchange = deployment.send(method, target, authorization=f"Bearer {deployment.token}")
        if 200 <= exchange.status < 300:
            findings.add(f"{label}: status {exchange.status}, expected a refusal", exchange)
    findings.conclude()


def _percent_encoded(text: str) -> str:
    return "".join(f"%{ord(c):02X}" for c in text)


@check("ownership.revoke-other")
def test_nobody_revokes_another_users_sessions(deployment: Deployment) -> None:
    b, b_token, before = second_user(deployment)
    a = deployment.user
    victim = before[len(before) // 2]
    findings = Findings()
    attempts = [
        (
            f"{a}'s token revoking {b}'s session through {b}'s path",
            "revokeSession",
            {"user_id": b, "session_id": victim},
            {403},
        ),
        (
            f"{a}'s token revoking {b}'s other sessions through {b}'s path",
            "revokeOtherSessions",
            {"user_id": b},
            {403},
        ),
        (
            f"{a}'s token revoking {b}'s session through {a}'s path",
            "revokeSession",
            {"user_id": a, "session_id": victim},
            {403, 404},
        ),
    ]
    for label, operation_id, path, statuses in attempts:
        exchange = deployment.call(operation_id, token=deployment.token, **path)
        findings.extend(problem_violations(exchange, statuses), exchange, prefix=f"{label}: ")
    after = all_ids(deployment, b, b_token)
    lost = [session for session in before if session not in after]
    if lost:
        findings.add(
            f"{b} lost {len(lost)} of {len(before)} active sessions to {a}'s requests (e.g. {lost[0]})"
        )
    findings.conclude()


@check("ownership.unknown-user")
def test_a_user_that_does_not_exist_is_not_found(deployment: Deployment) -> None:
    if deployment.minter is None:
        skip("needs the signing key (--signing-key-file) to sign a token for a user that does not exist")
    stranger = f"usr_contract_{secrets.token_hex(4)}"
    token = deployment.minter.mint(stranger)
    findings = Findings()
    for label, operation_id, path in (
        ("listing their sessions", "listUserSessions", {}),
        ("revoking their other sessions", "revokeOtherSessions", {}),
        ("revoking a session of theirs", "revokeSession", {"session_id": NOBODYS_SESSION}),
    ):
        exchange = deployment.call(operation_id, token=token, user_id=stranger, **path)
        findings.extend(
            problem_violations(exchange, 404),
            exchange,
            prefix=f"a valid token of {stranger}, who does not exist, {label}: ",
        )
    findings.conclude()
