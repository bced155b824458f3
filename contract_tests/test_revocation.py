"""Revocation checks: what the spec says `revokeSession` and `revokeOtherSessions` do, seen from outside.

They change data: against a deployment they run only with the signing key (to mint a token per session,
its `sid`) and on a caller with at least four active sessions, and they use at most four: one revoked
alone (which `revocation.repeat` and `revocation.token-refused` then reuse), the caller's own and at least
one other for "revoke the others". In process each check starts on freshly seeded data instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from .deployment import Deployment, success_status
from .expect import Findings, accepted, problem_violations, refused_token, skip
from .listing import all_ids, second_user, total

check = pytest.mark.check
MIN_SESSIONS = 4
NOBODYS_SESSION = "sess_contract_test_nobody"
NOBODY = "usr_contract_test_nobody"


@dataclass
class Revoked:
    """A session `revocation.one` revoked, and a token of it: what the next checks reuse against a
    deployment, so that the group needs no more than four sessions."""

    session_id: str
    token: str


_revoked: dict[int, Revoked] = {}


def _require(deployment: Deployment) -> list[str]:
    """The caller's listed sessions, or a skip saying what is missing."""
    if deployment.minter is None:
        skip("needs the signing key (--signing-key-file) to sign a token per session (its sid)")
    ids = all_ids(deployment, deployment.user, deployment.token)
    if len(ids) < MIN_SESSIONS and deployment.user not in _started:
        skip(
            f"{deployment.user} has {len(ids)} active sessions; the revocation checks need at least "
            f"{MIN_SESSIONS} (use a disposable test user)"
        )
    _started.add(deployment.user)
    return [session for session in ids if session != _own_sid(deployment)]


# Users the group started on: once it has, fewer sessions are left, and the rest of it still runs.
_started: set[str] = set()


def _own_sid(deployment: Deployment) -> str | None:
    """The session of the given token, if it names one: never revoked here, the run needs the token."""
    from .tokens import split

    try:
        return split(deployment.token)[1].get("sid")
    except ValueError:
        return None


def _revoke_one(deployment: Deployment, findings: Findings, candidates: list[str]) -> Revoked | None:
    """Revoke the oldest listed session, after proving a token of it is accepted."""
    victim = candidates[-1]
    token = deployment.token_for(deployment.user, sid=victim)
    assert token is not None
    before = deployment.call("listUserSessions", token=token, user_id=deployment.user)
    findings.extend(accepted(before, f"a token with sid {victim}, an active session"), before)
    exchange = deployment.call(
        "revokeSession", token=deployment.token, user_id=deployment.user, session_id=victim
    )
    findings.extend(accepted(exchange, f"revoking {victim}", success_status("revokeSession")), exchange)
    if exchange.status != success_status("revokeSession"):
        return None
    revoked = Revoked(victim, token)
    if not deployment.in_process:
        _revoked[id(deployment)] = revoked
    return revoked


def _already_revoked(deployment: Deployment, findings: Findings, candidates: list[str]) -> Revoked | None:
    return _revoked.get(id(deployment)) or _revoke_one(deployment, findings, candidates)


@check("revocation.one")
def test_revoking_a_session_ends_it(deployment: Deployment) -> None:
    candidates = _require(deployment)
    findings = Findings()
    before = all_ids(deployment, deployment.user, deployment.token)
    count = total(deployment, deployment.user, deployment.token)
    revoked = _revoke_one(deployment, findings, candidates)
    if revoked is not None:
        after = all_ids(deployment, deployment.user, deployment.token)
        if revoked.session_id in after:
            findings.add(f"{revoked.session_id} is still listed after its revocation answered 204")
        gone = [s for s in before if s not in after and s != revoked.session_id]
        if gone:
            findings.add(
                f"revoking {revoked.session_id} also ended {len(gone)} other sessions (e.g. {gone[0]})"
            )
        now = total(deployment, deployment.user, deployment.token)
        if now != count - 1:
            findings.add(f"total went from {count} to {now} after one revocation, expected {count - 1}")
    findings.conclude()


@check("revocation.repeat")
def test_revoking_a_session_again_is_not_found(deployment: Deployment) -> None:
    candidates = _require(deployment)
    findings = Findings()
    revoked = _already_revoked(deployment, findings, candidates)
    if revoked is not None:
        again = deployment.call(
            "revokeSession", token=deployment.token, user_id=deployment.user, session_id=revoked.session_id
        )
        findings.extend(
            problem_violations(again, 404), again, prefix=f"revoking {revoked.session_id} again: "
        )
    nobody = deployment.call(
        "revokeSession", token=deployment.token, user_id=deployment.user, session_id=NOBODYS_SESSION
    )
    findings.extend(problem_violations(nobody, 404), nobody, prefix="revoking a session id nobody has: ")
    findings.conclude()


@check("revocation.token-refused")
def test_a_revoked_sessions_token_is_refused(deployment: Deployment) -> None:
    candidates = _require(deployment)
    findings = Findings()
    # A sid that names no session of the user's is no session of theirs that is active either.
    made_up = deployment.token_for(deployment.user, sid=NOBODYS_SESSION)
    exchange = deployment.call("listUserSessions", token=made_up, user_id=deployment.user)
    findings.extend(
        refused_token(exchange, f"a token with the sid {NOBODYS_SESSION}, which names no session"), exchange
    )
    revoked = _already_revoked(deployment, findings, candidates)
    if revoked is not None:
        # revokeOtherSessions on the path of a user nobody is: a deployment that wrongly takes the token
        # answers 403 or 404 there, and revokes nothing of the caller's.
        for operation_id, path in (
            ("listUserSessions", {"user_id": deployment.user}),
            ("revokeSession", {"user_id": deployment.user, "session_id": NOBODYS_SESSION}),
            ("revokeOtherSessions", {"user_id": NOBODY}),
        ):
            exchange = deployment.call(operation_id, token=revoked.token, **path)
            findings.extend(
                refused_token(
                    exchange, f"a token with the sid of the revoked {revoked.session_id}, {operation_id}"
                ),
                exchange,
            )
    findings.conclude()


@check("revocation.others")
def test_revoking_the_others_leaves_only_the_callers(deployment: Deployment) -> None:
    candidates = _require(deployment)
    if len(candidates) < 2 and not (_own_sid(deployment) and candidates):
        skip(f"{deployment.user} has {len(candidates)} active sessions left: revoking the others needs 2")
    findings = Findings()
    # The given token's own session, when it names one, is the one kept: the run still needs that token.
    mine = _own_sid(deployment) or candidates[0]
    others = [s for s in candidates if s != mine]
    my_token = deployment.token_for(deployment.user, sid=mine)
    their_tokens = {s: deployment.token_for(deployment.user, sid=s) for s in others[:3]}
    for session, token in [(mine, my_token), *their_tokens.items()]:
        exchange = deployment.call("listUserSessions", token=token, user_id=deployment.user)
        findings.extend(accepted(exchange, f"a token with sid {session}, before"), exchange)
    if findings:
        findings.conclude()
    exchange = deployment.call("revokeOtherSessions", token=my_token, user_id=deployment.user)
    status = success_status("revokeOtherSessions")
    findings.extend(accepted(exchange, "revoking the others", status), exchange)
    body = exchange.json() if exchange.status == status else None
    if isinstance(body, dict):
        if "revoked" in body and body["revoked"] != len(others):
            findings.add(
                f"the answer says {body['revoked']!r} revoked, there were {len(others)} others", exchange
            )
        if (
            isinstance(body.get("revoked_ids"), list)
            and len(others) <= 100
            and set(body["revoked_ids"]) != set(others)
        ):
            findings.add("revoked_ids are not the other sessions", exchange)
        if "current_id" in body and body["current_id"] != mine:
            findings.add(f"current_id is {body['current_id']!r}, the caller's session is {mine}", exchange)
    listed = deployment.call("listUserSessions", token=my_token, user_id=deployment.user)
    findings.extend(accepted(listed, f"the caller's token (sid {mine}), after"), listed)
    left = listed.json() if listed.status == 200 else None
    if isinstance(left, dict):
        ids = [item.get("id") for item in left.get("items") or []]
        if ids != [mine]:
            findings.add(f"after revoking the others the list holds {ids[:5]}, expected only {mine}", listed)
        if left.get("total") != 1:
            findings.add(f"after revoking the others total is {left.get('total')!r}, expected 1", listed)
    for session, token in their_tokens.items():
        refused = deployment.call("listUserSessions", token=token, user_id=deployment.user)
        findings.extend(
            refused_token(refused, f"a token with sid {session}, revoked as one of the others"), refused
        )
    findings.conclude()


@check("revocation.foreign")
def test_another_users_session_cannot_be_revoked(deployment: Deployment) -> None:
    b, b_token, before = second_user(deployment)
    a = deployment.user
    victim = before[0]
    findings = Findings()
    exchange = deployment.call("revokeSession", token=deployment.token, user_id=a, session_id=victim)
    findings.extend(
        problem_violations(exchange, 404), exchange, prefix=f"{a} revoking {b}'s session {victim}: "
    )
    if victim not in all_ids(deployment, b, b_token):
        findings.add(f"{b}'s session {victim} is gone after {a} tried to revoke it", exchange)
    findings.conclude()
