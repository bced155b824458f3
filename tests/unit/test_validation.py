from __future__ import annotations

import pytest
from jsonschema import Draft4Validator

from autional_sessions.http.parameter_validation import describe
from autional_sessions.problems.languages import shipped_languages

PAGE = {"type": "integer", "minimum": 1, "maximum": 100000}
USER = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[a-z_]+$"}


@pytest.mark.parametrize(
    ("schema", "value", "expected"),
    [
        (PAGE, 0, ("range", "must be from 1 to 100000")),
        (PAGE, "x", ("format", "must be an integer")),
        ({"type": "integer", "minimum": 1}, 0, ("range", "must be at least 1")),
        ({"type": "integer", "maximum": 9}, 10, ("range", "must be at most 9")),
        (USER, "a" * 65, ("length", "must be 1 to 64 characters long")),
        (USER, "A!", ("pattern", "must match ^[a-z_]+$")),
        ({"enum": ["a", "b"]}, "c", ("enum", "must be one of a, b")),
        ({"type": "boolean"}, "yes", ("format", "must be true or false")),
    ],
)
def test_describes_a_violation_in_plain_words(schema, value, expected):
    error = next(Draft4Validator(schema).iter_errors(value))

    code, message, args = describe(error, schema)
    assert (code, shipped_languages().default.text(message, args)) == expected
