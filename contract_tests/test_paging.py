"""Paging checks: the spec's own sentences about `listUserSessions` and `dto.PageInfo`.

The caller's list is walked page by page at several page sizes (1, a few, the default, the maximum), once
for all these checks, and each check judges the walks by its own rule.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections import Counter
from typing import Any

import pytest

from .deployment import Deployment, parameter_schema
from .expect import Findings, skip
from .listing import MAX_WALK_PAGES, Page, default_page_size, fetch, max_page_size, walk

check = pytest.mark.check
# The page sizes walked: 1, a few, the default (asked for by leaving page_size out) and the maximum. A size
# whose walk would take more than this many pages is left out (a test user with thousands of sessions).
SIZES: tuple[int | None, ...] = (1, 3, 7, None)


class Walks:
    """The walks of the caller's list, by the page size asked for (None: the default)."""

    def __init__(self, total: int, walks: dict[int | None, list[Page]]) -> None:
        self.total = total
        self.by_size = walks

    def items(self) -> list[tuple[int | None, list[Page]]]:
        return list(self.by_size.items())

    @staticmethod
    def label(size: int | None) -> str:
        return f"page_size {size}" if size is not None else f"the default page_size ({default_page_size()})"


@pytest.fixture(scope="module")
def walks(deployment: Deployment) -> Walks:
    first = fetch(deployment, deployment.user, deployment.token, 1, max_page_size())
    total = first.body.get("total")
    if not isinstance(total, int):
        total = len(first.items)
    if total < 2:
        skip(f"{deployment.user} has {total} active sessions: paging needs at least 2")
    sizes = [
        s
        for s in (*SIZES, max_page_size())
        if math.ceil(total / (s or default_page_size())) <= MAX_WALK_PAGES
    ]
    return Walks(total, {size: walk(deployment, deployment.user, deployment.token, size) for size in sizes})


@check("paging.totals")
def test_totals_agree_and_add_up(walks: Walks) -> None:
    findings = Findings()
    for size, pages in walks.items():
        for page in pages:
            total, declared = page.body.get("total"), page.pagination.get("total")
            if total != declared:
                findings.add(
                    f"{walks.label(size)}, page {page.number}: total {total} but pagination.total {declared}",
                    page.exchange,
                )
            if total != walks.total:
                findings.add(
                    f"{walks.label(size)}, page {page.number}: total {total}, page 1 said {walks.total}",
                    page.exchange,
                )
        counted = sum(len(page.items) for page in pages)
        if counted != walks.total:
            findings.add(
                f"{walks.label(size)}: the pages hold {counted} items, total says {walks.total}",
                pages[-1].exchange,
            )
    findings.conclude()


@check("paging.coverage")
def test_no_item_twice_none_missing(walks: Walks) -> None:
    findings = Findings()
    for size, pages in walks.items():
        seen = Counter(session for page in pages for session in page.ids)
        twice = [session for session, n in seen.items() if n > 1]
        if twice:
            pages_with = [page for page in pages if twice[0] in page.ids]
            where = pages_with[-1]
            findings.add(
                f"{walks.label(size)}: {len(twice)} ids on more than one page (e.g. {twice[0]}, again on page {where.number})",
                where.exchange,
            )
        if len(seen) != walks.total:
            findings.add(
                f"{walks.label(size)}: {len(seen)} distinct ids across the pages, total says {walks.total}",
                pages[-1].exchange,
            )
    findings.conclude()


@check("paging.page-size-invariance")
def test_every_page_size_lists_the_same_sessions(walks: Walks) -> None:
    findings = Findings()
    reference_size, reference_pages = list(walks.items())[-1]
    reference = {session for page in reference_pages for session in page.ids}
    for size, pages in walks.items():
        ids = {session for page in pages for session in page.ids}
        if ids != reference:
            missing, extra = sorted(reference - ids), sorted(ids - reference)
            findings.add(
                f"{walks.label(size)} lists another set than {walks.label(reference_size)}: "
                f"{len(missing)} missing (e.g. {missing[:1]}), {len(extra)} more (e.g. {extra[:1]})",
                pages[0].exchange,
            )
    findings.conclude()


@check("paging.page-length")
def test_full_pages_hold_page_size_items(walks: Walks) -> None:
    findings = Findings()
    for size, pages in walks.items():
        effective = size or default_page_size()
        full_pages, rest = divmod(walks.total, effective)
        for page in pages:
            if page.number <= full_pages:
                expected = effective
            elif page.number == full_pages + 1:
                expected = rest
            else:
                expected = 0
            if len(page.items) != expected:
                findings.add(
                    f"{walks.label(size)}, page {page.number} of {walks.total} items: {len(page.items)} items, expected {expected}",
                    page.exchange,
                )
    findings.conclude()


@check("paging.navigation")
def test_navigation_fields_agree(deployment: Deployment, walks: Walks) -> None:
    findings = Findings()
    for size, pages in walks.items():
        for page in pages:
            findings.extend(
                _navigation(page, walks.total),
                page.exchange,
                prefix=f"{walks.label(size)}, page {page.number}: ",
            )
    findings.conclude()


@check("paging.past-end")
def test_a_page_past_the_end_is_empty(deployment: Deployment, walks: Walks) -> None:
    findings = Findings()
    maximum = int(parameter_schema("listUserSessions", "page")["maximum"])
    for size in (1, None):
        last = math.ceil(walks.total / (size or default_page_size()))
        for number in sorted({last + 1, last + 2, maximum}):
            exchange = deployment.list_page(deployment.user, deployment.token, number, size)
            body = exchange.json()
            label = f"{walks.label(size)}, page {number} (the last is {last})"
            if exchange.status != 200 or not isinstance(body, dict):
                findings.add(f"{label}: status {exchange.status}, expected 200", exchange)
                continue
            if body.get("items") != []:
                findings.add(f"{label}: {len(body.get('items') or [])} items, expected none", exchange)
            page = Page(number, size, exchange, body)
            findings.extend(_navigation(page, walks.total), exchange, prefix=f"{label}: ")
    findings.conclude()


@check("paging.order")
def test_items_are_ordered_by_last_activity_then_id(walks: Walks) -> None:
    findings = Findings()
    for size, pages in walks.items():
        items = [(page, item) for page in pages for item in page.items]
        for (_, before), (page, after) in itertools.pairwise(items):
            if _order_key(before) <= _order_key(after):
                findings.add(
                    f"{walks.label(size)}, page {page.number}: {after.get('id')} (last active {after.get('last_active_at')}) "
                    f"comes after {before.get('id')} (last active {before.get('last_active_at')}); "
                    "expected last_active_at descending, then id descending",
                    page.exchange,
                )
                break
    findings.conclude()


def _navigation(page: Page, total: int) -> list[str]:
    p = page.pagination
    size = page.effective_size
    total_pages = math.ceil(total / size)
    expected = {
        "page": page.number,
        "page_size": size,
        "total": total,
        "total_pages": total_pages,
        "has_next": page.number < total_pages,
        "has_prev": page.number > 1,
    }
    return [
        f"pagination.{name} is {p.get(name)!r}, expected {value!r}"
        for name, value in expected.items()
        if p.get(name) != value or type(p.get(name)) is not type(value)
    ]


def _order_key(item: dict[str, Any]) -> tuple[dt.datetime, str]:
    try:
        when = dt.datetime.fromisoformat(str(item.get("last_active_at")))
    except ValueError:
        when = dt.datetime.min.replace(tzinfo=dt.UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when, str(item.get("id"))
