"""The faulty deployments: each one realistic bug, and the checks of the conformance suite that must catch it.

Each fault is a function of the request and the proxy (tests/conformance/proxy.py), registered with the
check ids that must be FAILED when the suite runs their groups against it. Each is written as the bug would
be, in a sentence of its own, not as the check's mirror image: a fault that the suite misses is a check to
fix. `CORRECT_VARIANTS` are deployments that keep the contract on paths the plain one does not take.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import math
import re
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import jwt
from jwt.algorithms import RSAAlgorithm

from autional_sessions.db.models import SESSION_FIELDS, Session, User
from autional_sessions.problems.factory import utc_timestamp
from autional_sessions.testing import TEST_AUDIENCE, TEST_ISSUER, TEST_SECRET
from tests.conformance.proxy import (
    Fault,
    FaultProxy,
    Request,
    Response,
    launder,
    problem,
    signature_verifies,
    unverified,
)

MAX_TOKEN_BYTES = 8192  # the real server's default bound (AUTIONAL_JWT_MAX_BYTES)


@dataclasses.dataclass(frozen=True)
class FaultyDeployment:
    name: str
    bug: str  # the bug, in a sentence
    checks: tuple[str, ...]  # each must be FAILED
    fault: Fault
    # Groups that only make the responses the checks judge (a 204 comes from a revocation).
    helped_by: tuple[str, ...] = ()

    @property
    def groups(self) -> list[str]:
        """The groups the suite selects to run against it: its checks', and those that help them."""
        return list(dict.fromkeys([*self.helped_by, *(check.split(".", 1)[0] for check in self.checks)]))


DEPLOYMENTS: dict[str, FaultyDeployment] = {}


def deployment(
    name: str, bug: str, *checks: str, helped_by: tuple[str, ...] = ()
) -> Callable[[Fault], Fault]:
    def register(fault: Fault) -> Fault:
        assert name not in DEPLOYMENTS, name
        DEPLOYMENTS[name] = FaultyDeployment(name, bug, checks, fault, helped_by)
        return fault

    return register


def _header(token: str) -> dict[str, Any]:
    return unverified(token)[0]  # type: ignore[index]


def _claims(token: str) -> dict[str, Any]:
    return unverified(token)[1]  # type: ignore[index]


def _decodes(token: str, **options: bool) -> bool:
    """Whether the token verifies under the real key and rules, but for the checks turned off."""
    try:
        jwt.decode(
            token,
            TEST_SECRET,
            algorithms=["HS256"],
            issuer=TEST_ISSUER if options.get("verify_iss", True) else None,
            audience=TEST_AUDIENCE if options.get("verify_aud", True) else None,
            options={"require": ["exp", "sub"], **options},
        )
    except jwt.InvalidTokenError:
        return False
    return True


# Tokens --------------------------------------------------------------------------------------------------
def accepting(
    name: str, bug: str, *checks: str, operations: tuple[str, ...] | None = None
) -> Callable[[Callable[[str], bool]], Callable[[str], bool]]:
    """A deployment that takes a bearer token the real server refuses as valid when `wrongly_accepted`
    says so (on `operations` only, when given): the real app, sent a laundered token instead."""

    def register(wrongly_accepted: Callable[[str], bool]) -> Callable[[str], bool]:
        async def fault(request: Request, proxy: FaultProxy) -> Response:
            token = request.token
            if (
                token is not None
                and unverified(token) is not None
                and (operations is None or request.operation in operations)
                and wrongly_accepted(token)
            ):
                request = request.with_token(launder(token))
            return await proxy.forward(request)

        deployment(name, bug, *checks)(fault)
        return wrongly_accepted

    return register


@accepting("alg-none", "accepts unsigned tokens (alg none)", "token.alg-none")
def alg_none(token: str) -> bool:
    return str(_header(token).get("alg")).lower() == "none"


@accepting(
    "alg-none-case-sensitive",
    "refuses alg 'none' but compares case-sensitively, so 'None' and 'NONE' are unsigned tokens it accepts",
    "token.alg-none",
)
def alg_none_case_sensitive(token: str) -> bool:
    alg = str(_header(token).get("alg"))
    return alg.lower() == "none" and alg != "none"


@accepting(
    "signature-not-verified",
    "decodes tokens without verifying their signature",
    "token.signature-tampered",
    "token.payload-swapped",
    "token.foreign-key",
)
def signature_not_verified(token: str) -> bool:
    return token.count(".") == 2 and token.rsplit(".", 1)[1] != ""


@accepting(
    "signature-prefix-compared",
    "compares the signature sent with the start of the expected one, so a truncated signature passes",
    "token.signature-tampered",
)
def signature_prefix_compared(token: str) -> bool:
    signing_input, _, signature = token.rpartition(".")
    expected = hmac.new(TEST_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    try:
        sent = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    except ValueError:
        return False
    return bool(sent) and expected.startswith(sent)


@accepting(
    "empty-signature-accepted",
    "skips verification when the signature segment is empty or missing",
    "token.signature-stripped",
)
def empty_signature(token: str) -> bool:
    return token.count(".") == 1 or token.endswith(".")


@deployment(
    "signature-cache",
    "caches verified tokens by their signature alone, so a payload changed under a known signature passes",
    "token.payload-swapped",
)
async def signature_cache(request: Request, proxy: FaultProxy) -> Response:
    seen: set[str] = proxy.state.setdefault("signatures", set())
    token = request.token
    if token and token.count(".") == 2:
        signature = token.rsplit(".", 1)[1]
        if signature_verifies(token):
            seen.add(signature)
        elif signature in seen and unverified(token) is not None:
            request = request.with_token(launder(token))
    return await proxy.forward(request)


def _crash(request: Request) -> Response:
    return problem(request, 500, "internal-error", "Internal Server Error", 50000001, "An unexpected error")


@deployment("malformed-500", "crashes with a 500 on a token that is not a well-formed JWT", "token.malformed")
async def malformed_500(request: Request, proxy: FaultProxy) -> Response:
    token = request.token
    return (
        _crash(request) if token is not None and unverified(token) is None else await proxy.forward(request)
    )


@accepting("oversized-accepted", "puts no bound on a token's size", "token.oversized")
def oversized_accepted(token: str) -> bool:
    return len(token) > MAX_TOKEN_BYTES and _decodes(token)


@deployment("oversized-500", "crashes with a 500 on a token over its size bound", "token.oversized")
async def oversized_500(request: Request, proxy: FaultProxy) -> Response:
    token = request.token
    return (
        _crash(request)
        if token is not None and len(token) > MAX_TOKEN_BYTES
        else await proxy.forward(request)
    )


@deployment(
    "any-scheme-accepted",
    "takes the token from the Authorization header whatever its scheme (Token, JWT, Basic, none)",
    "token.wrong-scheme",
)
async def any_scheme(request: Request, proxy: FaultProxy) -> Response:
    value = request.header("authorization")
    if value is not None and request.token is None:
        candidate = value.split(" ", 1)[-1].strip()
        if unverified(candidate) is not None:
            request = request.with_token(candidate)
    return await proxy.forward(request)


@accepting("expired-accepted", "does not check exp", "token.expired")
def expired_accepted(token: str) -> bool:
    return _decodes(token, verify_exp=False)


@accepting(
    "expired-accepted-on-revocation",
    "checks exp on the list but not on revocations",
    "token.expired",
    operations=("revokeSession", "revokeOtherSessions"),
)
def expired_accepted_on_revocation(token: str) -> bool:
    return _decodes(token, verify_exp=False)


@accepting(
    "leeway-hours",
    "allows two hours of clock skew (a leeway meant in minutes), so a token expired an hour ago passes",
    "token.expired",
)
def leeway_hours(token: str) -> bool:
    exp = _claims(token).get("exp")
    return _decodes(token, verify_exp=False) and isinstance(exp, int) and exp > time.time() - 7200


@accepting("nbf-ignored", "does not check nbf", "token.not-yet-valid")
def nbf_ignored(token: str) -> bool:
    return _decodes(token, verify_nbf=False)


@accepting("issuer-not-checked", "does not check iss", "token.wrong-issuer")
def issuer_not_checked(token: str) -> bool:
    return _decodes(token, verify_iss=False)


@accepting(
    "issuer-substring",
    "checks iss as a substring of the expected issuer (PyJWT 2.10.0, CVE-2024-53861)",
    "token.wrong-issuer",
)
def issuer_substring(token: str) -> bool:
    iss = _claims(token).get("iss")
    return isinstance(iss, str) and iss in TEST_ISSUER and _decodes(token, verify_iss=False)


@accepting("audience-not-checked", "does not check aud", "token.wrong-audience")
def audience_not_checked(token: str) -> bool:
    return _decodes(token, verify_aud=False)


@accepting("audience-optional", "checks aud only when the token has one", "token.wrong-audience")
def audience_optional(token: str) -> bool:
    return "aud" not in _claims(token) and _decodes(token, verify_aud=False)


@accepting("exp-optional", "checks exp only when the token has one", "token.missing-exp")
def exp_optional(token: str) -> bool:
    claims = _claims(token)
    if "exp" in claims:
        return False
    with_exp = jwt.encode(
        {**claims, "exp": 2**31 - 1}, TEST_SECRET, algorithm="HS256", headers=_header(token)
    )
    return signature_verifies(token) and _decodes(with_exp)


@deployment(
    "missing-sub-403",
    "reads a token without sub as nobody's and answers 403 instead of refusing the token",
    "token.missing-sub",
)
async def missing_sub_403(request: Request, proxy: FaultProxy) -> Response:
    token = request.token
    if (
        token
        and unverified(token) is not None
        and not _claims(token).get("sub")
        and signature_verifies(token)
    ):
        request = request.with_token(launder(token, sub="usr_nobody_at_all"))
    return await proxy.forward(request)


@accepting(
    "kid-path",
    "reads the HMAC key from the file the kid names, so ../../dev/null gives an empty key",
    "token.unknown-kid",
)
def kid_path(token: str) -> bool:
    kid = _header(token).get("kid")
    return isinstance(kid, str) and "/" in kid and signature_verifies(token, b"")


@accepting(
    "kid-sql",
    "looks the HMAC key up by kid in SQL built by string formatting, so a UNION SELECT picks the key",
    "token.unknown-kid",
)
def kid_sql(token: str) -> bool:
    found = re.search(r"UNION\s+SELECT\s+'([^']*)'", str(_header(token).get("kid")), re.IGNORECASE)
    return found is not None and signature_verifies(token, found.group(1).encode())


@accepting(
    "embedded-jwk", "verifies a token with the jwk in its own header (CVE-2018-0114)", "token.foreign-key"
)
def embedded_jwk(token: str) -> bool:
    header = _header(token)
    if not isinstance(header.get("jwk"), dict):
        return False
    try:
        key = RSAAlgorithm.from_jwk(header["jwk"])
        jwt.decode(token, key, algorithms=["RS256"], options={"verify_aud": False})  # type: ignore[arg-type]
    except (jwt.InvalidTokenError, ValueError, KeyError):
        return False
    return True


@accepting(
    "revocations-unverified",
    "revoking the others decodes the token without verifying it (one operation wired to the wrong decoder)",
    "token.signature-tampered",
    "token.alg-none",
    operations=("revokeOtherSessions",),
)
def revocations_unverified(token: str) -> bool:
    return True


@deployment(
    "no-bearer-challenge",
    "refuses bad tokens with a 401 that has no WWW-Authenticate header",
    "token.malformed",
    "token.signature-tampered",
)
async def no_bearer_challenge(request: Request, proxy: FaultProxy) -> Response:
    response = await proxy.forward(request)
    return response.with_header("www-authenticate", None) if response.status == 401 else response


@deployment(
    "challenge-without-error",
    'answers every 401 with a bare `Bearer realm` challenge, never error="invalid_token"',
    "token.malformed",
    "token.expired",
)
async def challenge_without_error(request: Request, proxy: FaultProxy) -> Response:
    response = await proxy.forward(request)
    return (
        response.with_header("www-authenticate", 'Bearer realm="autional"')
        if response.status == 401
        else response
    )


# Ownership -----------------------------------------------------------------------------------------------
def _as_path_user(request: Request) -> Request:
    """The request, with the caller's token turned into one of the path's user."""
    token, user = request.token, request.path_user
    if token and user and unverified(token) is not None and _claims(token).get("sub") != user:
        return request.with_token(launder(token, sub=user, sid=None))
    return request


@deployment(
    "list-other-allowed",
    "lets any authenticated user list anyone's sessions (no check of sub against the path)",
    "ownership.list-other",
)
async def list_other_allowed(request: Request, proxy: FaultProxy) -> Response:
    if request.operation == "listUserSessions" and signature_verifies(request.token or ""):
        request = _as_path_user(request)
    return await proxy.forward(request)


@deployment(
    "revoke-other-allowed",
    "checks the owner on the list but not on revocations, so anyone's sessions can be revoked",
    "ownership.revoke-other",
)
async def revoke_other_allowed(request: Request, proxy: FaultProxy) -> Response:
    if request.operation in ("revokeSession", "revokeOtherSessions") and signature_verifies(
        request.token or ""
    ):
        request = _as_path_user(request)
    return await proxy.forward(request)


def _for_the_token_user(name: str, bug: str, check: str, operation: str, tail: str) -> None:
    """A deployment whose `operation` acts on the token's user, whatever user the path names."""

    async def fault(request: Request, proxy: FaultProxy) -> Response:
        token = request.token
        if request.operation == operation and token and signature_verifies(token):
            sub = _claims(token).get("sub")
            if sub and sub != request.path_user:
                request = dataclasses.replace(request, path=f"/sessions/user/{sub}/sessions{tail}")
        return await proxy.forward(request)

    deployment(name, bug, check)(fault)


_for_the_token_user(
    "list-of-the-token-user",
    "lists the token's user's sessions whatever the user in the path",
    "ownership.list-other",
    "listUserSessions",
    "",
)
_for_the_token_user(
    "revoke-others-of-the-token-user",
    "revokes the token's user's other sessions whatever the user in the path, and answers 200",
    "ownership.revoke-other",
    "revokeOtherSessions",
    "/revocations",
)


@deployment(
    "ownership-after-lookup",
    "looks the path's user up before checking ownership: another user that does not exist is a 404, not a 403",
    "ownership.list-other",
)
async def ownership_after_lookup(request: Request, proxy: FaultProxy) -> Response:
    response = await proxy.forward(request)
    missing = request.path_user and not User.select().where(User.id == request.path_user).exists()
    if response.status == 403 and b"user-mismatch" in response.body and missing:
        return await proxy.forward(_as_path_user(request))
    return response


def _owner(session_id: str) -> str | None:
    row = Session.get_or_none(Session.id == session_id)
    return row.user_id if row is not None else None


@deployment(
    "revoke-by-id-alone",
    "revokes a session by its id alone, whoever's it is (the user in the path is not in the statement)",
    "revocation.foreign",
    "ownership.revoke-other",
)
async def revoke_by_id_alone(request: Request, proxy: FaultProxy) -> Response:
    if request.operation == "revokeSession" and signature_verifies(request.token or ""):
        session_id = request.segments[4]
        owner = _owner(session_id)
        if owner is not None and owner != request.path_user:
            owned = request.with_token(launder(request.token or "", sub=owner, sid=None))
            return await proxy.forward(
                dataclasses.replace(owned, path=f"/sessions/user/{owner}/sessions/{session_id}")
            )
    return await proxy.forward(request)


@deployment(
    "unknown-user-empty-list",
    "answers a valid token of a user that does not exist with an empty list instead of 404",
    "ownership.unknown-user",
)
async def unknown_user_empty_list(request: Request, proxy: FaultProxy) -> Response:
    response = await proxy.forward(request)
    if (
        request.operation == "listUserSessions"
        and response.status == 404
        and b"user-not-found" in response.body
    ):
        page_size = int(request.params.get("page_size", 20))
        page = int(request.params.get("page", 1))
        document = {
            "code": 0,
            "message": "success",
            "timestamp": utc_timestamp(),
            "total": 0,
            "items": [],
            "pagination": {
                "page": page,
                "page_size": page_size,
                "total": 0,
                "total_pages": 0,
                "has_next": False,
                "has_prev": page > 1,
            },
        }
        return Response(
            200,
            (
                ("content-type", "application/json"),
                ("cache-control", "no-store"),
                ("x-request-id", response.header("x-request-id") or ""),
            ),
        ).with_json(document)
    return response


# Paging and listing: the real list, re-paged by a faulty pager ---------------------------------------------
Pager = Callable[[list[dict[str, Any]], int, int], dict[str, Any]]


def correct_page(items: list[dict[str, Any]], page: int, page_size: int) -> dict[str, Any]:
    """What the real server answers, from every item in order: the reference the faults depart from."""
    total = len(items)
    total_pages = math.ceil(total / page_size)
    return {
        "total": total,
        "items": items[(page - 1) * page_size : page * page_size],
        "pagination": {
            "page": page,
            "page_size": page_size,
            "total": total,
            "total_pages": total_pages,
            "has_next": page < total_pages,
            "has_prev": page > 1,
        },
    }


async def _repage(
    request: Request,
    proxy: FaultProxy,
    pager: Pager,
    extra: Callable[[Request], list[dict[str, Any]]] | None = None,
) -> Response:
    """The list as the real server has it (plus `extra` items, in order), paged by `pager`."""
    response = await proxy.forward(request)
    if request.operation != "listUserSessions" or response.status != 200:
        return response
    items = await proxy.all_items(request)
    if extra is not None:
        current = request.token and _claims(request.token).get("sid")
        added = extra(request)
        if current:
            added = [{**item, "current": item["id"] == current} for item in added]
        items = sorted(items + added, key=lambda i: (i["last_active_at"], i["id"]), reverse=True)
    params = request.params
    document = response.json()
    document.update(pager(items, int(params.get("page", 1)), int(params.get("page_size", 20))))
    return response.with_json(document)


def _pager(change: Callable[[dict[str, Any], list[dict[str, Any]], int, int], None]) -> Pager:
    """A pager that changes the correct page in place."""

    def pager(items: list[dict[str, Any]], page: int, page_size: int) -> dict[str, Any]:
        document = correct_page(items, page, page_size)
        change(document, items, page, page_size)
        return document

    return pager


def paging_deployment(name: str, bug: str, *checks: str) -> Callable[[Pager], Pager]:
    def register(pager: Pager) -> Pager:
        async def fault(request: Request, proxy: FaultProxy) -> Response:
            return await _repage(request, proxy, pager)

        deployment(name, bug, *checks)(fault)
        return pager

    return register


@paging_deployment(
    "total-off-by-one", "counts one session too many in total (but not in pagination)", "paging.totals"
)
@_pager
def total_off_by_one(document: dict, items: list, page: int, page_size: int) -> None:
    document["total"] += 1


@paging_deployment(
    "totals-off-by-one", "counts one session too many, in total and in pagination alike", "paging.totals"
)
@_pager
def totals_off_by_one(document: dict, items: list, page: int, page_size: int) -> None:
    document["total"] += 1
    document["pagination"]["total"] += 1
    document["pagination"]["total_pages"] = math.ceil(document["total"] / page_size)
    document["pagination"]["has_next"] = page < document["pagination"]["total_pages"]


@paging_deployment(
    "pages-overlap", "starts each page after the first one item early (offset off by one)", "paging.coverage"
)
@_pager
def pages_overlap(document: dict, items: list, page: int, page_size: int) -> None:
    start = max((page - 1) * page_size - 1, 0)
    document["items"] = items[start : start + page_size]


@paging_deployment(
    "pages-skip",
    "starts each page after the first one item late, so one item a page is never listed",
    "paging.coverage",
)
@_pager
def pages_skip(document: dict, items: list, page: int, page_size: int) -> None:
    start = (page - 1) * page_size + (1 if page > 1 else 0)
    document["items"] = items[start : start + page_size]


@paging_deployment(
    "page-size-capped",
    "caps page_size at 10 without saying so: pagination keeps the size asked for",
    "paging.page-length",
)
@_pager
def page_size_capped(document: dict, items: list, page: int, page_size: int) -> None:
    start = (page - 1) * page_size
    document["items"] = items[start : start + min(page_size, 10)]


@paging_deployment(
    "page-one-longer",
    "returns page_size + 1 items on every full page (an inclusive end)",
    "paging.page-length",
)
@_pager
def page_one_longer(document: dict, items: list, page: int, page_size: int) -> None:
    start = (page - 1) * page_size
    document["items"] = items[start : start + page_size + 1]


@paging_deployment("total-pages-floor", "computes total_pages with a floor division", "paging.navigation")
@_pager
def total_pages_floor(document: dict, items: list, page: int, page_size: int) -> None:
    document["pagination"]["total_pages"] = len(items) // page_size


@paging_deployment(
    "has-next-on-last-page", "says has_next on the last page too (<= for <)", "paging.navigation"
)
@_pager
def has_next_on_last_page(document: dict, items: list, page: int, page_size: int) -> None:
    document["pagination"]["has_next"] = page <= document["pagination"]["total_pages"]


@paging_deployment("has-prev-never", "never says has_prev", "paging.navigation")
@_pager
def has_prev_never(document: dict, items: list, page: int, page_size: int) -> None:
    document["pagination"]["has_prev"] = False


@paging_deployment(
    "past-end-clamped", "answers a page past the end with the last page's items", "paging.past-end"
)
@_pager
def past_end_clamped(document: dict, items: list, page: int, page_size: int) -> None:
    last = max(document["pagination"]["total_pages"], 1)
    if page > last:
        document["items"] = items[(last - 1) * page_size : last * page_size]


@deployment("past-end-404", "answers a page past the end with 404", "paging.past-end")
async def past_end_404(request: Request, proxy: FaultProxy) -> Response:
    response = await proxy.forward(request)
    if request.operation == "listUserSessions" and response.status == 200:
        document = response.json()
        if not document["items"] and document["pagination"]["page"] > 1:
            return problem(request, 404, "route-not-found", "Not Found", 40400002, "No such page")
    return response


@deployment(
    "default-page-size-10", "uses 10 as the default page_size where the spec says 20", "paging.page-length"
)
async def default_page_size_10(request: Request, proxy: FaultProxy) -> Response:
    if request.operation == "listUserSessions" and "page_size" not in request.params:
        request = request.with_params(page_size=10)
    return await proxy.forward(request)


@deployment(
    "max-page-size-refused",
    "refuses page_size above 50 with a 400, where the spec allows 100",
    "paging.page-length",
)
async def max_page_size_refused(request: Request, proxy: FaultProxy) -> Response:
    if request.operation == "listUserSessions" and int(request.params.get("page_size", "20") or 0) > 50:
        return await proxy.forward(request.with_params(page_size=1000))
    return await proxy.forward(request)


@paging_deployment("order-ascending", "orders by last_active_at ascending", "paging.order")
def order_ascending(items: list, page: int, page_size: int) -> dict[str, Any]:
    return correct_page(list(reversed(items)), page, page_size)


@paging_deployment(
    "tie-break-ascending",
    "breaks ties of last_active_at by id ascending",
    "paging.order",
)
def tie_break_ascending(items: list, page: int, page_size: int) -> dict[str, Any]:
    by_id = sorted(items, key=lambda i: i["id"])
    return correct_page(sorted(by_id, key=lambda i: i["last_active_at"], reverse=True), page, page_size)


@paging_deployment(
    "page-size-changes-the-set",
    "runs another query for page sizes other than the default, one that misses the oldest session",
    "paging.page-size-invariance",
)
def page_size_changes_the_set(items: list, page: int, page_size: int) -> dict[str, Any]:
    return correct_page(items if page_size == 20 else items[:-1], page, page_size)


def _rows(request: Request, condition: Any) -> list[dict[str, Any]]:
    """Sessions from the database, serialized as the list serializes them."""
    items = []
    for row in Session.select().where(condition).order_by(Session.id):
        item: dict[str, Any] = {}
        for name in SESSION_FIELDS:
            value = getattr(row, name)
            item[name] = utc_timestamp(value) if isinstance(value, dt.datetime) else value
        items.append(item)
    return items


def listing_deployment(
    name: str, bug: str, check: str, extra: Callable[[Request], list[dict[str, Any]]]
) -> None:
    async def fault(request: Request, proxy: FaultProxy) -> Response:
        return await _repage(request, proxy, correct_page, extra)

    deployment(name, bug, check)(fault)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


listing_deployment(
    "lists-another-users-session",
    "joins the wrong table: one session of another user shows in the list",
    "listing.owner",
    lambda r: _rows(
        r, (Session.user != r.path_user) & (Session.status == "active") & (Session.expires_at > _now())
    )[:1],
)
listing_deployment(
    "lists-revoked",
    "lists revoked sessions (the status filter dropped)",
    "listing.active",
    lambda r: _rows(r, (Session.user == r.path_user) & (Session.status == "revoked")),
)
listing_deployment(
    "lists-past-absolute-timeout",
    "ignores expires_at",
    "listing.unexpired",
    lambda r: _rows(
        r,
        (Session.user == r.path_user)
        & (Session.status == "active")
        & (Session.expires_at <= _now())
        & (Session.idle_expires_at > _now()),
    ),
)
listing_deployment(
    "lists-past-idle-timeout",
    "ignores idle_expires_at",
    "listing.unexpired",
    lambda r: _rows(
        r,
        (Session.user == r.path_user)
        & (Session.status == "active")
        & (Session.idle_expires_at <= _now())
        & (Session.expires_at > _now()),
    ),
)


def _marking_current(name: str, bug: str, with_sid: bool | None, without_sid: bool | None) -> None:
    """A deployment that sets `current` on every listed item: to `with_sid` when the token has a sid, to
    `without_sid` when it has none (None: as the real server has it)."""

    async def fault(request: Request, proxy: FaultProxy) -> Response:
        response = await proxy.forward(request)
        if request.operation != "listUserSessions" or response.status != 200:
            return response
        value = with_sid if request.token and _claims(request.token).get("sid") else without_sid
        document = response.json()
        if value is not None:
            for item in document["items"]:
                item["current"] = value
        return response.with_json(document)

    deployment(name, bug, "listing.current")(fault)


_marking_current("current-on-every-item", "marks every item current when the token has a sid", True, None)
_marking_current("current-never", "never marks the token's session current", False, None)
_marking_current(
    "current-without-sid", "says current: false on every item of a token without sid", None, False
)


@deployment(
    "current-on-first-item", "marks the first item current instead of the token's session", "listing.current"
)
async def current_on_first_item(request: Request, proxy: FaultProxy) -> Response:
    response = await proxy.forward(request)
    if request.operation != "listUserSessions" or response.status != 200:
        return response
    document = response.json()
    if document["items"] and "current" in document["items"][0]:
        for n, item in enumerate(document["items"]):
            item["current"] = n == 0 and document["pagination"]["page"] == 1
    return response.with_json(document)


# Revocation ----------------------------------------------------------------------------------------------
@deployment("revoke-does-nothing", "answers 204 to a revocation and revokes nothing", "revocation.one")
async def revoke_does_nothing(request: Request, proxy: FaultProxy) -> Response:
    if request.operation == "revokeSession":
        # What the real server would revoke (the caller's own active session) gets its 204, and stays.
        the_list = dataclasses.replace(request, method="GET", path=request.path.rsplit("/", 1)[0], query="")
        listed = await proxy.forward(the_list)
        if listed.status == 200 and request.segments[4] in {i["id"] for i in await proxy.all_items(the_list)}:
            return Response(
                204, (("cache-control", "no-store"), ("x-request-id", listed.header("x-request-id") or ""))
            )
    return await proxy.forward(request)


@deployment(
    "revoke-stale-total", "keeps a cached count: total does not drop after a revocation", "revocation.one"
)
async def revoke_stale_total(request: Request, proxy: FaultProxy) -> Response:
    revoked: dict[str, int] = proxy.state.setdefault("revoked", {})
    response = await proxy.forward(request)
    user = request.path_user or ""
    if request.operation == "revokeSession" and response.status == 204:
        revoked[user] = revoked.get(user, 0) + 1
    if request.operation == "listUserSessions" and response.status == 200 and revoked.get(user):
        document = response.json()
        document["total"] += revoked[user]
        document["pagination"]["total"] += revoked[user]
        return response.with_json(document)
    return response


@deployment(
    "revoke-again-204", "answers 204 to revoking a session that is already revoked", "revocation.repeat"
)
async def revoke_again_204(request: Request, proxy: FaultProxy) -> Response:
    response = await proxy.forward(request)
    if (
        request.operation == "revokeSession"
        and response.status == 404
        and b"session-not-found" in response.body
    ):
        return Response(
            204, (("cache-control", "no-store"), ("x-request-id", response.header("x-request-id") or ""))
        )
    return response


@deployment(
    "revoked-token-accepted",
    "does not look up the token's session: a revoked session's token still works",
    "revocation.token-refused",
    "revocation.others",
)
async def revoked_token_accepted(request: Request, proxy: FaultProxy) -> Response:
    response = await proxy.forward(request)
    if response.status == 401 and b"session-ended" in response.body:
        return await proxy.forward(request.with_token(launder(request.token or "", sid=None)))
    return response


@deployment(
    "revoke-others-revokes-all",
    "revokes the caller's own session too when revoking the others",
    "revocation.others",
)
async def revoke_others_revokes_all(request: Request, proxy: FaultProxy) -> Response:
    response = await proxy.forward(request)
    sid = _claims(request.token).get("sid") if request.token and unverified(request.token) else None
    if request.operation == "revokeOtherSessions" and response.status == 200 and sid:
        path = request.path.rsplit("/", 1)[0] + f"/{sid}"
        await proxy.call(request, "DELETE", path, launder(request.token or "", sid=None))
    return response


@deployment(
    "revoke-others-does-nothing",
    "answers revoking the others with what it would revoke, and revokes nothing",
    "revocation.others",
)
async def revoke_others_does_nothing(request: Request, proxy: FaultProxy) -> Response:
    if request.operation != "revokeOtherSessions":
        return await proxy.forward(request)
    list_path = request.path.rsplit("/", 1)[0]
    listed = await proxy.call(request, "GET", list_path, request.token)
    if listed.status != 200:
        return await proxy.forward(request)
    items = await proxy.all_items(dataclasses.replace(request, path=list_path))
    sid = _claims(request.token or "").get("sid")
    ids = [i["id"] for i in items if i["id"] != sid]
    document = {
        "code": 0,
        "message": "success",
        "timestamp": utc_timestamp(),
        "revoked": len(ids),
        "revoked_ids": ids[:100],
    }
    if sid:
        document["current_id"] = sid
    return listed.with_json(document)


@deployment(
    "revoke-others-spares-newest",
    "revokes the others but the most recent one (an off-by-one in the batch)",
    "revocation.others",
)
async def revoke_others_spares_newest(request: Request, proxy: FaultProxy) -> Response:
    if request.operation != "revokeOtherSessions":
        return await proxy.forward(request)
    list_path = request.path.rsplit("/", 1)[0]
    if (await proxy.call(request, "GET", list_path, request.token)).status != 200:
        return await proxy.forward(request)
    sid = _claims(request.token or "").get("sid")
    others = [
        i["id"] for i in await proxy.all_items(dataclasses.replace(request, path=list_path)) if i["id"] != sid
    ]
    plain = launder(request.token or "", sid=None)
    for session_id in others[1:]:
        await proxy.call(request, "DELETE", f"{list_path}/{session_id}", plain)
    document = {
        "code": 0,
        "message": "success",
        "timestamp": utc_timestamp(),
        "revoked": len(others),
        "revoked_ids": others[:100],
    }
    if sid:
        document["current_id"] = sid
    return Response(200, (("content-type", "application/json"), ("cache-control", "no-store"))).with_json(
        document
    )


@deployment(
    "revoke-others-miscounts",
    "counts the caller's own session among the revoked in its answer",
    "revocation.others",
)
async def revoke_others_miscounts(request: Request, proxy: FaultProxy) -> Response:
    response = await proxy.forward(request)
    if request.operation == "revokeOtherSessions" and response.status == 200:
        document = response.json()
        if "current_id" in document:
            document["revoked"] += 1
            document["revoked_ids"] = [document["current_id"], *document["revoked_ids"]][:100]
        return response.with_json(document)
    return response


@deployment(
    "foreign-session-403",
    "answers 403 for another user's session id, which tells that it exists",
    "revocation.foreign",
)
async def foreign_session_403(request: Request, proxy: FaultProxy) -> Response:
    response = await proxy.forward(request)
    if request.operation == "revokeSession" and response.status == 404:
        owner = _owner(request.segments[4])
        if owner is not None and owner != request.path_user:
            return problem(request, 403, "user-mismatch", "Forbidden", 40300001, "Not your session")
    return response


# Problems and headers ------------------------------------------------------------------------------------
def response_deployment(
    name: str, bug: str, *checks: str, helped_by: tuple[str, ...] = ()
) -> Callable[[Callable[[Request, Response], Response]], Any]:
    """A fault that rewrites the real app's responses."""

    def register(rewrite: Callable[[Request, Response], Response]) -> Any:
        async def fault(request: Request, proxy: FaultProxy) -> Response:
            return rewrite(request, await proxy.forward(request))

        deployment(name, bug, *checks, helped_by=helped_by)(fault)
        return rewrite

    return register


@response_deployment("problems-as-json", "sends problems as application/json", "problems.media-type")
def problems_as_json(request: Request, response: Response) -> Response:
    return response.with_header("content-type", "application/json") if response.is_problem else response


@response_deployment("problem-status-400", "writes status 400 into every problem body", "problems.status")
def problem_status_400(request: Request, response: Response) -> Response:
    if response.is_problem:
        return response.with_json({**response.json(), "status": 400})
    return response


@response_deployment(
    "problem-request-id-new", "makes a new request id for the problem body", "problems.request-id"
)
def problem_request_id_new(request: Request, response: Response) -> Response:
    if response.is_problem:
        return response.with_json({**response.json(), "request_id": f"req_{uuid.uuid4()}"})
    return response


@response_deployment("request-id-not-echoed", "always makes its own X-Request-ID", "headers.request-id-echo")
def request_id_not_echoed(request: Request, response: Response) -> Response:
    if request.header("x-request-id") and response.header("x-request-id") == request.header("x-request-id"):
        request_id = f"req_{uuid.uuid4()}"
        if response.is_problem:
            response = response.with_json({**response.json(), "request_id": request_id})
        return response.with_header("x-request-id", request_id)
    return response


@response_deployment(
    "request-id-echoed-blindly",
    "echoes any X-Request-ID the caller sends, however long or strange",
    "headers.request-id-echo",
)
def request_id_echoed_blindly(request: Request, response: Response) -> Response:
    sent = request.header("x-request-id")
    if sent is not None and response.header("x-request-id") != sent:
        if response.is_problem:
            response = response.with_json({**response.json(), "request_id": sent})
        return response.with_header("x-request-id", sent)
    return response


@response_deployment(
    "no-store-on-errors-only", "sends Cache-Control: no-store on errors only", "headers.no-store"
)
def no_store_on_errors_only(request: Request, response: Response) -> Response:
    return response.with_header("cache-control", None) if response.status < 400 else response


@response_deployment(
    "cache-control-private",
    "lets clients cache lists (Cache-Control: private, max-age=60)",
    "headers.no-store",
)
def cache_control_private(request: Request, response: Response) -> Response:
    return (
        response.with_header("cache-control", "private, max-age=60") if response.status == 200 else response
    )


@response_deployment(
    "no-request-id-on-204",
    "leaves X-Request-ID off 204 responses",
    "headers.request-id-echo",
    helped_by=("revocation",),
)
def no_request_id_on_204(request: Request, response: Response) -> Response:
    return response.with_header("x-request-id", None) if response.status == 204 else response


@response_deployment(
    "no-store-missing-on-204",
    "leaves Cache-Control off 204 responses",
    "headers.no-store",
    helped_by=("revocation",),
)
def no_store_missing_on_204(request: Request, response: Response) -> Response:
    return response.with_header("cache-control", None) if response.status == 204 else response


@response_deployment(
    "unknown-route-html", "answers a path that is no operation with an HTML 404 page", "problems.media-type"
)
def unknown_route_html(request: Request, response: Response) -> Response:
    if response.status == 404 and b"route-not-found" in response.body:
        body = b"<html><body><h1>404 Not Found</h1></body></html>"
        return Response(
            404,
            (
                ("content-type", "text/html"),
                ("content-length", str(len(body))),
                *((k, v) for k, v in response.headers if k not in ("content-type", "content-length")),
            ),
            body,
        )
    return response


@response_deployment("traceback-in-problem", "puts the stack trace into a 401's detail", "problems.no-leak")
def traceback_in_problem(request: Request, response: Response) -> Response:
    if response.status == 401 and response.is_problem:
        detail = (
            'Traceback (most recent call last):\n  File "/srv/autional/auth.py", line 88, in verify\n'
            "jwt.exceptions.DecodeError: Not enough segments"
        )
        return response.with_json({**response.json(), "detail": detail})
    return response


@response_deployment("sql-in-problem", "puts the failing SQL into a 404's detail", "problems.no-leak")
def sql_in_problem(request: Request, response: Response) -> Response:
    if response.status == 404 and response.is_problem:
        detail = "no row: SELECT id, status FROM sessions WHERE user_id = ? AND id = ?"
        return response.with_json({**response.json(), "detail": detail})
    return response


@response_deployment(
    "cors-reflects-any-origin",
    "reflects any Origin and allows credentials",
    "headers.cors",
)
def cors_reflects_any_origin(request: Request, response: Response) -> Response:
    origin = request.header("origin")
    if origin is None:
        return response
    return response.with_header("access-control-allow-origin", origin).with_header(
        "access-control-allow-credentials", "true"
    )


@response_deployment(
    "cors-wildcard-with-credentials",
    "answers Access-Control-Allow-Origin: * with credentials allowed",
    "headers.cors",
)
def cors_wildcard_with_credentials(request: Request, response: Response) -> Response:
    if request.header("origin") is None:
        return response
    return response.with_header("access-control-allow-origin", "*").with_header(
        "access-control-allow-credentials", "true"
    )


@deployment(
    "cors-preflight-reflects-any-origin",
    "answers every CORS preflight with the caller's origin and credentials allowed",
    "headers.cors",
)
async def cors_preflight_reflects_any_origin(request: Request, proxy: FaultProxy) -> Response:
    origin = request.header("origin")
    if request.method == "OPTIONS" and origin and request.header("access-control-request-method"):
        headers = (
            ("access-control-allow-origin", origin),
            ("access-control-allow-credentials", "true"),
            ("access-control-allow-methods", "GET, POST, DELETE"),
            ("access-control-allow-headers", "authorization"),
            ("cache-control", "no-store"),
            ("x-request-id", request.header("x-request-id") or "req_preflight"),
        )
        return Response(204, headers)
    return await proxy.forward(request)


async def _every_fifth_request_limited(
    request: Request, proxy: FaultProxy, retry_after: str | None
) -> Response:
    """A rate limit that refuses every fifth request of the API, with this Retry-After (None: none)."""
    count = proxy.state["requests"] = proxy.state.get("requests", 0) + 1
    if request.operation is not None and count % 5 == 0:
        limited = problem(request, 429, "rate-limited", "Too Many Requests", 42900001, "Too many requests")
        return limited.with_header("retry-after", retry_after)
    return await proxy.forward(request)


@deployment(
    "too-many-requests-without-retry-after",
    "rate-limits every fifth request, with no Retry-After",
    "headers.retry-after",
)
async def too_many_requests_without_retry_after(request: Request, proxy: FaultProxy) -> Response:
    return await _every_fifth_request_limited(request, proxy, None)


@deployment(
    "retry-after-not-a-number",
    "rate-limits every fifth request with a Retry-After that is no number of seconds or date",
    "headers.retry-after",
)
async def retry_after_not_a_number(request: Request, proxy: FaultProxy) -> Response:
    return await _every_fifth_request_limited(request, proxy, "soon")


# Found by trying the suite as an adversary would: each was green before its check was sharpened ---------------
def _genuine_but(token: str, claim: str) -> bool:
    """The token is signed with the key and for this service; only `claim` may be wrong."""
    claims = _claims(token)
    fine = {
        "iss": claims.get("iss") == TEST_ISSUER,
        "aud": claims.get("aud") == TEST_AUDIENCE,
        "exp": isinstance(claims.get("exp"), int) and claims["exp"] > time.time(),
        "sub": isinstance(claims.get("sub"), str) and bool(claims["sub"]),
    }
    return signature_verifies(token) and all(ok for name, ok in fine.items() if name != claim)


@accepting(
    "exp-string-ignored",
    "checks exp only when it is a number, so a string exp counts as none (jwt-go's MapClaims before v4)",
    "token.expired",
)
def exp_string_ignored(token: str) -> bool:
    return isinstance(_claims(token).get("exp"), str) and _genuine_but(token, "exp")


@accepting("nbf-string-ignored", "checks nbf only when it is a number", "token.not-yet-valid")
def nbf_string_ignored(token: str) -> bool:
    return isinstance(_claims(token).get("nbf"), str) and _genuine_but(token, "nbf")


@accepting(
    "signature-extra-bytes",
    "compares the signature over the expected length only, so bytes appended to it are ignored",
    "token.signature-tampered",
)
def signature_extra_bytes(token: str) -> bool:
    signing_input, _, signature = token.rpartition(".")
    try:
        raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    except ValueError:
        return False
    digest = hmac.new(TEST_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return len(raw) > len(digest) and hmac.compare_digest(raw[: len(digest)], digest)


@accepting(
    "alg-none-padded",
    "refuses alg none by exact comparison, so ' none' (padded) is an unsigned token it accepts",
    "token.alg-none",
)
def alg_none_padded(token: str) -> bool:
    alg = _header(token).get("alg")
    return isinstance(alg, str) and alg != alg.strip() and alg.strip().lower() == "none"


@accepting("issuer-case-insensitive", "compares iss ignoring case", "token.wrong-issuer")
def issuer_case_insensitive(token: str) -> bool:
    iss = _claims(token).get("iss")
    return isinstance(iss, str) and iss.lower() == TEST_ISSUER.lower() and _genuine_but(token, "iss")


@deployment(
    "token-in-query",
    "takes the token from an access_token query parameter when there is no Authorization header",
    "token.wrong-scheme",
)
async def token_in_query(request: Request, proxy: FaultProxy) -> Response:
    params = request.params
    if request.header("authorization") is None and "access_token" in params:
        token = params.pop("access_token")
        request = dataclasses.replace(request, query=urlencode(params)).with_token(token)
    return await proxy.forward(request)


@deployment(
    "ownership-case-insensitive",
    "compares the path's user with sub ignoring case, and lists the token's user's sessions",
    "ownership.list-other",
)
async def ownership_case_insensitive(request: Request, proxy: FaultProxy) -> Response:
    token, user = request.token, request.path_user
    sub = _claims(token).get("sub") if token and unverified(token) else None
    if isinstance(sub, str) and user and user != sub and user.lower() == sub.lower():
        request = dataclasses.replace(request, path=request.path.replace(f"/{user}/", f"/{sub}/", 1))
    return await proxy.forward(request)


@deployment(
    "revoked-token-revokes-others",
    "revoking the others does not look the token's session up, so a revoked session's token still works there",
    "revocation.token-refused",
)
async def revoked_token_revokes_others(request: Request, proxy: FaultProxy) -> Response:
    token = request.token
    revoking_others = request.operation == "revokeOtherSessions"
    if (
        revoking_others
        and token
        and unverified(token)
        and "sid" in _claims(token)
        and signature_verifies(token)
    ):
        request = request.with_token(launder(token, sid=None))
    return await proxy.forward(request)


@response_deployment(
    "problem-type-not-a-uri", "writes the title into a problem's type", "problems.media-type"
)
def problem_type_not_a_uri(request: Request, response: Response) -> Response:
    if response.is_problem:
        document = response.json()
        return response.with_json({**document, "type": document.get("title", "Error")})
    return response


@response_deployment(
    "go-sql-error-in-problem", "puts the database driver's error into a 404's detail", "problems.no-leak"
)
def go_sql_error_in_problem(request: Request, response: Response) -> Response:
    if response.is_problem and response.status == 404:
        return response.with_json(
            {**response.json(), "detail": 'pq: relation "user_sessions" does not exist'}
        )
    return response


# Correct deployments that take paths the plain one does not ------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CorrectVariant:
    name: str
    what: str
    groups: tuple[str, ...]
    fault: Fault


async def _rate_limited(request: Request, proxy: FaultProxy) -> Response:
    return await _every_fifth_request_limited(request, proxy, "3")


CORRECT_VARIANTS = {
    variant.name: variant
    for variant in (
        CorrectVariant(
            "rate-limited", "rate-limits every fifth request, with Retry-After", ("headers",), _rate_limited
        ),
    )
}
