"""Parameter validation compiled per operation: every location the spec can declare, typed values out,
every violation reported."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator

from autional_sessions.http.parameter_validation import OperationParameters
from autional_sessions.http.schema_predicates import surely_valid
from autional_sessions.problems.factory import ProblemError

PARAMETERS = [
    {"name": "user_id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 8}},
    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 1}},
    {"name": "tags", "in": "query", "schema": {"type": "array", "items": {"type": "integer"}}},
    {"name": "X-Tenant", "in": "header", "required": True, "schema": {"type": "string", "pattern": "^t_"}},
    {"name": "session", "in": "cookie", "schema": {"type": "string", "minLength": 3}},
    {"name": "verbose", "in": "query", "schema": {"type": "boolean"}},
]


def scope(query: str = "", headers: dict[str, str] | None = None, user_id: str = "usr_a") -> dict:
    headers = {"X-Tenant": "t_1"} if headers is None else headers
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return {"query_string": query.encode(), "headers": raw_headers, "path_params": {"user_id": user_id}}


def validate(**kwargs) -> dict:
    return OperationParameters(PARAMETERS, strict=True, security_query_params=[]).validate(scope(**kwargs))


def violations(**kwargs) -> list[tuple[str, str]]:
    with pytest.raises(ProblemError) as raised:
        validate(**kwargs)
    return [(v.field, v.code) for v in raised.value.errors]


def test_values_are_typed_and_defaults_filled_in():
    arguments = validate(
        query="tags=1&tags=2&verbose=true", headers={"X-Tenant": "t_1", "Cookie": "session=abcd"}
    )

    assert arguments == {
        "user_id": "usr_a",
        "page": 1,
        "tags": [1, 2],
        "X-Tenant": "t_1",
        "session": "abcd",
        "verbose": True,
    }


def test_a_header_parameter_is_validated():
    assert violations(headers={"X-Tenant": "nope"}) == [("X-Tenant", "pattern")]
    assert violations(headers={}) == [("X-Tenant", "required")]


def test_a_cookie_parameter_is_validated():
    assert violations(headers={"X-Tenant": "t_1", "Cookie": "session=ab"}) == [("session", "length")]


def test_every_violation_is_reported_not_only_the_first():
    found = violations(query="page=0&tags=x&extra=1&verbose=maybe", user_id="far-too-long")

    assert sorted(found) == [
        ("extra", "unknown"),
        ("page", "range"),
        ("tags", "format"),
        ("user_id", "length"),
        ("verbose", "format"),
    ]


@pytest.mark.parametrize("raw", ["1.0", " 1", "1_000", "\u0661", "0x10", ""])
def test_integers_are_plain_decimal_digits(raw):
    assert violations(query=f"page={raw}") == [("page", "format")]


def test_a_repeated_single_valued_parameter_is_refused():
    assert violations(query="page=1&page=2") == [("page", "duplicate")]


@pytest.mark.parametrize(
    ("parameter", "refusal"),
    [
        (
            {
                "name": "filter",
                "in": "query",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "no schema",
        ),
        (
            {"name": "f", "in": "query", "style": "deepObject", "schema": {"type": "object"}},
            "style 'deepObject'",
        ),
        (
            {"name": "ids", "in": "query", "style": "pipeDelimited", "schema": {"type": "array"}},
            "pipeDelimited",
        ),
        (
            {"name": "ids", "in": "query", "style": "spaceDelimited", "schema": {"type": "array"}},
            "spaceDelimited",
        ),
        (
            {"name": "id", "in": "path", "required": True, "style": "matrix", "schema": {"type": "string"}},
            "matrix",
        ),
        (
            {"name": "id", "in": "path", "required": True, "style": "label", "schema": {"type": "string"}},
            "label",
        ),
    ],
)
def test_what_validation_cannot_check_is_refused_when_the_app_is_built(parameter, refusal):
    # Not let through unchecked on every request: the app does not start.
    with pytest.raises(ValueError, match=refusal):
        OperationParameters([parameter], strict=True, security_query_params=[])


# --- the quick yes ahead of jsonschema (http/schema_predicates.py) ------------------------------------


def _spec_parameter_schemas() -> list[dict]:
    """Every parameter schema of the spec, its `$ref`s followed."""
    from autional_sessions.spec import load_spec

    spec = load_spec()

    def resolve(node: dict) -> dict:
        while "$ref" in node:
            target = spec
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    schemas = [
        resolve(resolve(parameter)["schema"])
        for item in spec["paths"].values()
        for owner in [item, *(op for op in item.values() if isinstance(op, dict))]
        for parameter in owner.get("parameters", [])
    ]
    assert len(schemas) >= 3
    return schemas


SIMPLE_SCHEMAS = [
    *_spec_parameter_schemas(),
    {"type": "integer", "minimum": -5},
    {"type": "string", "minLength": 2},
    {"type": "string", "pattern": "^[a-z]+$", "maxLength": 3},
]


@pytest.mark.parametrize("schema", SIMPLE_SCHEMAS, ids=lambda s: str(sorted(s.items())))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    value=st.one_of(
        st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from([0, 1, 100, 100000, 100001, 2**31, -1, True, False, 1.0, 20.5, None, ""]),
        st.floats(allow_nan=True),
        st.text(),
        st.from_regex(r"[A-Za-z0-9_.:-]{0,70}\n?", fullmatch=True),
        st.booleans(),
    )
)
def test_the_quick_yes_is_only_ever_given_where_jsonschema_says_yes(schema, value):
    quick = surely_valid(schema, frozenset(Draft4Validator.FORMAT_CHECKER.checkers))
    assert quick is not None  # every schema here is simple enough: the quick path is in use

    if quick(value):
        assert Draft4Validator(schema, format_checker=Draft4Validator.FORMAT_CHECKER).is_valid(value)


def test_the_quick_yes_covers_the_usual_values_and_leaves_other_schemas_to_jsonschema():
    checked = frozenset(Draft4Validator.FORMAT_CHECKER.checkers)
    page = surely_valid({"type": "integer", "format": "int32", "minimum": 1, "maximum": 100000}, checked)
    user = surely_valid({"type": "string", "maxLength": 64, "pattern": "^[A-Za-z0-9_.:-]+$"}, checked)

    assert page is not None and page(1) and page(100000) and not page(0) and not page(True)
    assert user is not None and user("usr_0000001") and not user("usr 1") and not user(7)
    for other in (
        {"type": "string", "format": "date-time"},
        {"type": "string", "enum": ["a"]},
        {"type": "number"},
        {"type": "integer", "exclusiveMinimum": True, "minimum": 0},
    ):
        assert surely_valid(other, checked) is None
