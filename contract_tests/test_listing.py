"""What is listed: only the path user's own sessions, only active ones, none past a timeout, and the
caller's own session marked as such (the spec's `listUserSessions` and `dto.SessionResponse`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from .deployment import Deployment
from .expect import Findings, skip
from .listing import MAX_WALK_PAGES, Page, default_page_size, max_page_size, walk

check = pytest.mark.check
# How far a listed session's timeout may lie before the response's own timestamp: its seconds are
# truncated. Against the runner's clock (when the response has no usable timestamp), a clock skew too.
TIMESTAMP_ALLOWANCE = dt.timedelta(seconds=1)
CLOCK_SKEW = dt.timedelta(seconds=30)


def _listed(deployment: Deployment, user: str, token: str) -> list[Page]:
    pages = walk(deployment, user, token, max_page_size())
    if not any(page.items for page in pages):
        skip(f"{user} has no active session to look at")
    return pages


def _others(deployment: Deployment) -> list[tuple[str, str]]:
    """(user, token) of everyone whose list the run can read: the caller, and the second user."""
    people = [(deployment.user, deployment.token)]
    if deployment.other_user_given and (token := deployment.other_token) is not None:
        people.append((deployment.other_user, token))
    return people


@check("listing.owner")
def test_every_item_is_the_path_users(deployment: Deployment) -> None:
    findings = Findings()
    for user, token in _others(deployment):
        for page in _listed(deployment, user, token):
            for item in page.items:
                if item.get("user_id") != user:
                    findings.add(
                        f"{user}'s list holds {item.get('id')} of user {item.get('user_id')!r}", page.exchange
                    )
    findings.conclude()


@check("listing.active")
def test_every_item_is_active(deployment: Deployment) -> None:
    findings = Findings()
    for user, token in _others(deployment):
        for page in _listed(deployment, user, token):
            for item in page.items:
                if item.get("status") != "active":
                    findings.add(
                        f"{user}'s list holds {item.get('id')} with status {item.get('status')!r}",
                        page.exchange,
                    )
    findings.conclude()


@check("listing.unexpired")
def test_no_item_is_past_a_timeout(deployment: Deployment) -> None:
    findings = Findings()
    for user, token in _others(deployment):
        for page in _listed(deployment, user, token):
            now = _reference_time(page)
            for item in page.items:
                for field in ("expires_at", "idle_expires_at"):
                    when = _parse(item.get(field))
                    if when is None or when <= now:
                        findings.add(
                            f"{user}'s list holds {item.get('id')} whose {field} {item.get(field)!r} is not after "
                            f"{now.isoformat()}",
                            page.exchange,
                        )
    findings.conclude()


@check("listing.current")
def test_the_callers_session_is_current(deployment: Deployment) -> None:
    if deployment.minter is None:
        skip("needs the signing key (--signing-key-file) to sign a token with a sid")
    minter = deployment.minter
    plain = minter.mint(deployment.user)
    ids = [session for page in _listed(deployment, deployment.user, plain) for session in page.ids]
    findings = Findings()
    # Without sid, no item says whether it is current.
    for page in walk(deployment, deployment.user, plain, max_page_size()):
        marked = [item.get("id") for item in page.items if "current" in item]
        if marked:
            findings.add(
                f"a token without sid: {len(marked)} items carry current (e.g. {marked[0]})", page.exchange
            )
    # With sid: exactly that item is current, on whichever page it is, at the smallest and largest sizes.
    mine = ids[len(ids) // 2]
    token = minter.mint(deployment.user, sid=mine)
    smallest = next((n for n in (1, 3, 7) if len(ids) <= n * MAX_WALK_PAGES), default_page_size())
    for size in (smallest, max_page_size()):
        pages = walk(deployment, deployment.user, token, size)
        for page in pages:
            for item in page.items:
                expected = item.get("id") == mine
                if item.get("current") is not expected:
                    findings.add(
                        f"a token with sid {mine}, page_size {size}: {item.get('id')} has current "
                        f"{item.get('current', 'absent')!r}, expected {expected}",
                        page.exchange,
                    )
        if not any(mine in page.ids for page in pages):
            findings.add(
                f"a token with sid {mine}, page_size {size}: its session is not listed", pages[0].exchange
            )
    findings.conclude()


def _reference_time(page: Page) -> dt.datetime:
    """The instant the response says its sessions are active as of (its `timestamp`), or the runner's clock
    less a skew when it has none that is plausible."""
    runner = dt.datetime.now(dt.UTC)
    stamp = _parse(page.body.get("timestamp"))
    if stamp is not None and abs(stamp - runner) < dt.timedelta(minutes=5):
        return stamp - TIMESTAMP_ALLOWANCE
    return runner - CLOCK_SKEW


def _parse(value: Any) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
