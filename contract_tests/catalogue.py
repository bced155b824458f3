"""The test plan: every check of the suite, in the order it runs, with the requirement it enforces.

A check id (`group.name`) is the suite's interface: reports, `--select` and the tests that prove each check
fails on a deployment with its bug all name checks by id. Ids are added, never renamed.

The order matters against a deployment, where checks share its data: the read-only checks first, then the
ones that revoke sessions, then the schema's fuzzing and link sequences (which revoke the given user's
sessions too), and the problem and header checks last, which also judge every response the run saw.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    id: str
    requirement: str
    title: str
    # What the check needs beyond one user's token, said in the report when it is missing.
    needs: str = ""

    @property
    def group(self) -> str:
        return self.id.split(".", 1)[0]


_KEY = "the signing key (--signing-key-file)"
_REVOKE = "the signing key and a user with at least 4 active sessions"

CHECKS: tuple[Check, ...] = (
    # Tokens: RFC 8725 (JWT Best Current Practices), RFC 7519 (JWT), RFC 6750 (bearer tokens).
    Check(
        "token.alg-none",
        "RFC 8725 section 3.1; RFC 7518 section 3.6",
        "a token with alg none (every casing), signature empty or kept, is refused",
    ),
    Check(
        "token.signature-tampered",
        "RFC 7515 section 5.2; RFC 8725 section 3.1",
        "a token whose signature is altered is refused",
    ),
    Check(
        "token.signature-stripped",
        "RFC 7515 section 5.2; RFC 8725 section 3.1",
        "a token whose signature is stripped or empty is refused",
    ),
    Check(
        "token.payload-swapped",
        "RFC 7515 section 5.2; OWASP API2:2023",
        "a payload changed under the original signature (another sub, a later exp) is refused",
    ),
    Check(
        "token.malformed",
        "RFC 7519 section 7.2; RFC 6750 section 3.1",
        "a token that is not a well-formed JWT is refused",
    ),
    Check(
        "token.oversized",
        "RFC 8725 section 3.1 (bounded input); openapi.yaml bearerAuth: size bounded before parsing",
        "a token of about 10 KB (over the 8 KiB a deployment may take) is refused with a 401 problem",
    ),
    Check(
        "token.wrong-scheme",
        "RFC 6750 sections 2.1 and 3",
        "the token under another scheme (Basic, Token, none) is not a bearer token: 401 with a Bearer challenge",
    ),
    Check("token.expired", "RFC 7519 section 4.1.4", "a token whose exp has passed is refused", _KEY),
    Check("token.not-yet-valid", "RFC 7519 section 4.1.5", "a token whose nbf is ahead is refused", _KEY),
    Check(
        "token.wrong-issuer",
        "RFC 8725 section 3.8; RFC 7519 section 4.1.1",
        "a token of another issuer, or with none, is refused",
        _KEY + " and --issuer",
    ),
    Check(
        "token.wrong-audience",
        "RFC 8725 section 3.9; RFC 7519 section 4.1.3",
        "a token for another audience, or for none, is refused",
        _KEY + " and --audience",
    ),
    Check(
        "token.missing-exp",
        "openapi.yaml bearerAuth: the token must carry exp; RFC 7519 section 4.1.4",
        "a token without exp is refused",
        _KEY,
    ),
    Check(
        "token.missing-sub",
        "openapi.yaml bearerAuth: the token must carry sub (the user ID); RFC 7519 section 4.1.2",
        "a token without sub, or with an empty one, is refused",
        _KEY,
    ),
    Check(
        "token.foreign-key",
        "RFC 7515 section 5.2; RFC 8725 sections 2.1 and 3.1 (algorithm confusion, embedded jwk)",
        "a token signed with a key the deployment does not trust is refused",
    ),
    Check(
        "token.unknown-kid",
        "RFC 7515 section 4.1.4; RFC 8725 section 3.10 (kid injection)",
        "a token naming an unknown kid (or a path or SQL as kid), signed with a key of the suite's own, is refused",
    ),
    # Ownership: OWASP API Security Top 10 (2023).
    Check(
        "ownership.list-other",
        "OWASP API1:2023; openapi.yaml listUserSessions: 403 before any lookup",
        "a user cannot list another user's sessions (403)",
    ),
    Check(
        "ownership.revoke-other",
        "OWASP API1:2023 and API5:2023; openapi.yaml revokeSession, revokeOtherSessions",
        "a user cannot revoke another user's sessions, through either path; the other's sessions survive",
        "a second user (--other-user-id, with --other-token or the signing key)",
    ),
    Check(
        "ownership.unknown-user",
        "openapi.yaml listUserSessions and revokeOtherSessions: 404 User not found",
        "a valid token for a user that does not exist gets 404",
        _KEY,
    ),
    # Paging: the spec's own sentences (listUserSessions, dto.PageInfo).
    Check(
        "paging.totals",
        "openapi.yaml dto.SessionListResponse.total, dto.PageInfo.total",
        "total equals pagination.total on every page, and the items of all pages add up to it",
    ),
    Check(
        "paging.coverage",
        "openapi.yaml listUserSessions: pages are stable",
        "across the pages of a walk no id comes twice and none is missing",
    ),
    Check(
        "paging.page-size-invariance",
        "openapi.yaml listUserSessions: pages are stable",
        "every page size lists the same set of ids",
    ),
    Check(
        "paging.page-length",
        "openapi.yaml dto.PageInfo.page_size",
        "full pages hold exactly page_size items, the last the rest, none more",
    ),
    Check(
        "paging.navigation",
        "openapi.yaml dto.PageInfo: total_pages = ceil(total / page_size), has_next, has_prev",
        "page, page_size, total_pages, has_next and has_prev agree with the request and total",
    ),
    Check(
        "paging.past-end",
        "openapi.yaml listUserSessions: a page past the last one is a 200 with no items",
        "a page past the end is a 200 with no items",
    ),
    Check(
        "paging.order",
        "openapi.yaml listUserSessions: last_active_at descending, then id descending",
        "items are ordered by last_active_at descending, then id descending, across pages",
    ),
    # What is listed.
    Check(
        "listing.owner",
        "OWASP API1:2023; openapi.yaml dto.SessionResponse.user_id",
        "every item belongs to the user in the path",
    ),
    Check(
        "listing.active",
        "openapi.yaml listUserSessions: revoked and expired sessions never appear",
        "every item has status active",
    ),
    Check(
        "listing.unexpired",
        "openapi.yaml listUserSessions: expires_at and idle_expires_at lie in the future",
        "every item's expires_at and idle_expires_at are after the response's timestamp",
    ),
    Check(
        "listing.current",
        "openapi.yaml dto.SessionResponse.current (OpenID Connect sid)",
        "with a sid token exactly that item is current; without sid no item carries current",
        _KEY,
    ),
    # Revocation: the spec's revokeSession and revokeOtherSessions.
    Check(
        "revocation.one",
        "openapi.yaml revokeSession: 204, the session stops being active",
        "revoking a session answers 204, it leaves the list and total drops by one",
        _REVOKE,
    ),
    Check(
        "revocation.repeat",
        "openapi.yaml revokeSession: 404 when the session is already revoked",
        "revoking the same session again answers 404",
        _REVOKE,
    ),
    Check(
        "revocation.token-refused",
        "openapi.yaml revokeSession: a token whose sid names it is refused from then on",
        "a token carrying a revoked session's sid gets 401",
        _REVOKE,
    ),
    Check(
        "revocation.others",
        "openapi.yaml revokeOtherSessions: every session but the caller's is revoked",
        "revoking the others leaves exactly the caller's session; its token works, the others' do not",
        _REVOKE,
    ),
    Check(
        "revocation.foreign",
        "OWASP API1:2023; openapi.yaml revokeSession: 404 for another user's session",
        "another user's session id through the caller's path is a 404 and the session survives",
        "a second user (--other-user-id, with --other-token or the signing key)",
    ),
    # The schema: every Schemathesis check on every operation.
    Check(
        "schema",
        "openapi.yaml (OpenAPI 3.0): every Schemathesis check",
        "every operation: examples, coverage, fuzzing and link sequences, every response validated",
    ),
    # Problems and headers: every response this run saw, and probes of their own.
    Check(
        "problems.media-type",
        "RFC 9457 section 3; openapi.yaml dto.Problem",
        "every error response is application/problem+json and a dto.Problem",
    ),
    Check(
        "problems.status",
        "RFC 9457 section 3.1.3",
        "a problem's status equals the HTTP status",
    ),
    Check(
        "problems.request-id",
        "openapi.yaml dto.Problem.request_id, X-Request-ID",
        "a problem's request_id equals the X-Request-ID header",
    ),
    Check(
        "headers.request-id-echo",
        "openapi.yaml X-Request-ID: the caller's own when sane, else the server's",
        "every response carries X-Request-ID; a sane one sent is echoed, an insane one is not",
    ),
    Check(
        "headers.no-store",
        "OWASP API8:2023; openapi.yaml Cache-Control: no-store",
        "every response carries Cache-Control: no-store",
    ),
    Check(
        "headers.retry-after",
        "RFC 9110 section 10.2.3; openapi.yaml 429 and 503 responses",
        "every 429 and 503 carries a valid Retry-After",
        "a 429 or 503 to look at (in process, or a deployment that rate-limits the run)",
    ),
    Check(
        "problems.no-leak",
        "OWASP API8:2023; openapi.yaml 500: says nothing about the server's internals",
        "no body holds a stack trace, a source file path or SQL",
    ),
    Check(
        "headers.cors",
        "Fetch standard (CORS protocol); openapi.yaml Access-Control-Allow-Origin: credentials never allowed",
        "no arbitrary origin is allowed with credentials",
    ),
)

BY_ID = {check.id: check for check in CHECKS}
ORDER = {check.id: n for n, check in enumerate(CHECKS)}


def selected(patterns: Iterable[str] | None) -> set[str]:
    """The check ids that the `--select` globs name (every check when there are none)."""
    patterns = list(patterns or [])
    if not patterns:
        return set(BY_ID)
    return {check_id for check_id in BY_ID if any(fnmatch.fnmatchcase(check_id, p) for p in patterns)}


def unmatched(patterns: Iterable[str]) -> list[str]:
    """The globs that name no check: a typo would otherwise skip everything silently."""
    return [p for p in patterns if not any(fnmatch.fnmatchcase(check_id, p) for check_id in BY_ID)]
