"""Walking a user's session list page by page, as the paging, listing and revocation checks need it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .deployment import Deployment, Exchange, parameter_schema
from .expect import CheckFailed, skip

# A walk stops here whatever the pages say: a deployment whose pages never end must not hang the run.
MAX_PAGES = 400
# A page size whose walk would take more pages than this is left out (a test user with thousands of sessions).
MAX_WALK_PAGES = 120


@dataclass
class Page:
    number: int  # the page asked for
    size: int | None  # the page_size asked for (None: the default)
    exchange: Exchange
    body: dict[str, Any]

    @property
    def items(self) -> list[dict[str, Any]]:
        return self.body.get("items") or []

    @property
    def ids(self) -> list[str]:
        return [item.get("id") for item in self.items]

    @property
    def pagination(self) -> dict[str, Any]:
        return self.body.get("pagination") or {}

    @property
    def effective_size(self) -> int:
        return self.size if self.size is not None else default_page_size()


def default_page_size() -> int:
    return int(parameter_schema("listUserSessions", "page_size")["default"])


def max_page_size() -> int:
    return int(parameter_schema("listUserSessions", "page_size")["maximum"])


def fetch(deployment: Deployment, user: str, token: str, page: int | None, size: int | None) -> Page:
    exchange = deployment.list_page(user, token, page, size)
    body = exchange.json()
    if exchange.status != 200 or not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise CheckFailed(
            f"listing page {page} (page_size {size}) of {user}: status {exchange.status}, "
            f"not a session list ({exchange.body[:160]!r})",
            [exchange],
        )
    return Page(page or 1, size, exchange, body)


def walk(deployment: Deployment, user: str, token: str, size: int | None) -> list[Page]:
    """Every page at this page size, from page 1 until one comes back short or empty, as a client that
    follows them would see them: so the walk ends on a page past the end when the pages are full. It goes
    one page further than `total` says there are, so that a total too small hides nothing, and no further,
    so that pages that never end (a page number ignored) cannot hold the run up."""
    pages: list[Page] = []
    number = 1
    effective = size if size is not None else default_page_size()
    while number <= MAX_PAGES:
        page = fetch(deployment, user, token, number, size)
        pages.append(page)
        total = page.body.get("total")
        last = math.ceil(total / effective) + 1 if isinstance(total, int) and total >= 0 else MAX_PAGES
        if len(page.items) < effective or number >= last:
            break
        number += 1
    return pages


def all_ids(deployment: Deployment, user: str, token: str) -> list[str]:
    """The ids of the user's listed sessions, in the order of the list, at the largest page size."""
    return [session for page in walk(deployment, user, token, max_page_size()) for session in page.ids]


def total(deployment: Deployment, user: str, token: str) -> int:
    page = fetch(deployment, user, token, 1, 1)
    value = page.body.get("total")
    if not isinstance(value, int):
        raise CheckFailed(f"the list of {user} has no integer total", [page.exchange])
    return value


def second_user(deployment: Deployment) -> tuple[str, str, list[str]]:
    """The second user, a token of theirs and their listed session ids; a skip saying what is missing."""
    if not deployment.other_user_given:
        skip("needs a second user: --other-user-id with --other-token or the signing key")
    token = deployment.other_token
    if token is None:
        skip("needs a token of the second user: --other-token or the signing key")
    assert token is not None
    ids = all_ids(deployment, deployment.other_user, token)
    if not ids:
        skip(f"{deployment.other_user} has no active session")
    return deployment.other_user, token, ids
