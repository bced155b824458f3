"""A quick yes for a parameter value that a simple JSON schema surely accepts, ahead of jsonschema.

jsonschema's `is_valid` walks a schema keyword by keyword through its dispatch tables: for the three
small schemas of a list request (a pattern, two integer ranges) that was 5 % of a request's time. A
parameter's schema that uses only `type` (integer or string), bounds, lengths and a pattern is compiled
here into one plain function. It is an accept test only: True means jsonschema would accept the value
too; False means "ask jsonschema", which then gives the verdict and the violations. A value the function
cannot judge for certain (a float for an integer, a bool) is never accepted by it, so its answer can only
ever save time, not change one (`tests/unit/test_parameters.py` checks this on the spec's own schemas).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# Keywords the function handles, and those that never constrain a value (annotations).
_HANDLED = frozenset({"type", "minimum", "maximum", "minLength", "maxLength", "pattern"})
_ANNOTATIONS = frozenset({"default", "example", "description", "title", "format"})

Predicate = Callable[[Any], bool]


def surely_valid(schema: dict, checked_formats: frozenset[str]) -> Predicate | None:
    """A function that answers True only for values `schema` accepts; None when the schema uses anything
    else (then jsonschema alone decides). `checked_formats`: the formats the validator checks (a schema
    naming one of those is left to it; any other `format` is an annotation, as jsonschema treats it)."""
    if not set(schema) <= _HANDLED | _ANNOTATIONS or schema.get("format") in checked_formats:
        return None
    kind = schema.get("type")
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        if not all(bound is None or type(bound) is int for bound in (low, high)):
            return None
        if any(name in schema for name in ("minLength", "maxLength", "pattern")):
            return None  # string keywords on an integer: ignored by jsonschema, left to it all the same
        low = -(2**63) if low is None else low
        high = 2**63 if high is None else high
        # `type(value) is int`: not a bool, not a float (which jsonschema's draft 4 refuses anyway).
        return lambda value: type(value) is int and low <= value <= high
    if kind == "string":
        if "minimum" in schema or "maximum" in schema:
            return None
        shortest, longest = schema.get("minLength", 0), schema.get("maxLength")
        longest = float("inf") if longest is None else longest
        search = re.compile(schema["pattern"]).search if "pattern" in schema else None
        if search is None:
            return lambda value: type(value) is str and shortest <= len(value) <= longest
        return lambda value: (
            type(value) is str and shortest <= len(value) <= longest and search(value) is not None
        )
    return None
