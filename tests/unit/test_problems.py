from __future__ import annotations

import datetime as dt
import json

from autional_sessions.problems.factory import FieldViolation, ProblemCatalogue, ProblemError, utc_timestamp
from autional_sessions.spec import load_spec, problem_types


def catalogue() -> ProblemCatalogue:
    return ProblemCatalogue.from_spec(load_spec(), "https://docs.example/problems/", "svc")


def test_the_catalogue_is_the_spec_list():
    entries = problem_types(load_spec())

    assert {p.name for p in catalogue()} == set(entries)
    assert catalogue()["user-not-found"].type_uri == "https://docs.example/problems/user-not-found"


def test_render_fills_every_required_member():
    response = catalogue().render(
        ProblemError(
            "invalid-request", "1 request parameter is invalid", errors=[FieldViolation("page", "range", "x")]
        )
    )
    body = json.loads(response.body)

    required = load_spec()["components"]["schemas"]["dto.Problem"]["required"]
    assert set(required) <= body.keys()
    assert body["status"] == response.status_code == 400
    assert body["errors"] == [{"field": "page", "code": "range", "description": "x"}]
    assert body["service"] == "svc"
    assert response.mimetype == "application/problem+json"


def test_retry_after_goes_to_header_and_body():
    response = catalogue().render(ProblemError("service-unavailable", "down", retry_after=7))

    assert response.headers["Retry-After"] == "7"
    assert json.loads(response.body)["retry_after"] == 7


def test_timestamps_are_rfc3339_utc():
    moment = dt.datetime(2026, 4, 3, 14, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))

    assert utc_timestamp(moment) == "2026-04-03T12:00:00Z"
    assert utc_timestamp(dt.datetime(2026, 4, 3, 12, 0, 0)) == "2026-04-03T12:00:00Z"
