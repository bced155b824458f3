"""Request-parameter validation that reports every violation, each with its field and a short code.

Connexion's own validator stops at the first error and reports it as a jsonschema dump. This one checks
every parameter against its schema from the spec (compiled once per operation, not per request) and
raises one `invalid-request` problem that lists them all as `dto.FieldViolation`s.
"""

from __future__ import annotations

from typing import Any

from connexion.lifecycle import ConnexionRequest
from connexion.validators import ParameterValidator
from jsonschema import Draft4Validator, ValidationError
from starlette.datastructures import QueryParams

from autional_sessions.problems import FieldViolation, ProblemError

_FORMAT_CHECKER = Draft4Validator.FORMAT_CHECKER
# id(schema) -> (schema, its validator). Holding the schema keeps it alive, so its id cannot be reused by
# another dict while the entry exists.
_compiled: dict[int, tuple[dict, Draft4Validator]] = {}


def _schema_validator(schema: dict) -> Draft4Validator:
    # Connexion builds a validator object per request; the parameter schemas themselves live as long as
    # the app, so compile each one once.
    entry = _compiled.get(id(schema))
    if entry is None or entry[0] is not schema:
        entry = _compiled[id(schema)] = (schema, Draft4Validator(schema, format_checker=_FORMAT_CHECKER))
    return entry[1]


def describe(error: ValidationError, schema: dict) -> tuple[str, str]:
    """(code, description) for one jsonschema error, in words a caller understands."""
    kind = error.validator
    if kind == "type":
        return "format", f"must be {_article(schema.get('type', 'value'))}"
    if kind in {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}:
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            return "range", f"must be from {low} to {high}"
        if low is not None:
            return "range", f"must be at least {low}"
        return "range", f"must be at most {high}"
    if kind in {"minLength", "maxLength"}:
        return "length", (
            f"must be {schema.get('minLength', 0)} to {schema['maxLength']} characters long"
            if "maxLength" in schema
            else f"must be at least {schema['minLength']} characters long"
        )
    if kind == "pattern":
        return "pattern", f"must match {schema['pattern']}"
    if kind == "enum":
        return "enum", "must be one of " + ", ".join(map(str, schema["enum"]))
    if kind == "format":
        return "format", f"must be a valid {schema.get('format')}"
    return "invalid", f"is not valid ({kind})"


def _article(type_name: str) -> str:
    return {"integer": "an integer", "array": "an array", "object": "an object"}.get(
        type_name, f"a {type_name}"
    )


class CollectingParameterValidator(ParameterValidator):
    """Validates path and query parameters like Connexion does, but collects every violation."""

    def validate_request(self, request: ConnexionRequest) -> None:
        violations: list[FieldViolation] = []
        if self.strict_validation:
            unknown = self.validate_query_parameter_list(request, security_params=self.security_query_params)
            violations.extend(
                FieldViolation(name, "unknown", "is not a parameter of this operation")
                for name in sorted(unknown)
            )
        # A repeated single-valued parameter is ambiguous (which one wins differs between proxies and
        # frameworks: HTTP parameter pollution), so it is refused rather than silently resolved.
        raw_query = QueryParams(request.scope.get("query_string", b"").decode("latin-1"))
        for param in self.parameters.get("path", []):
            violations.extend(self._check(param, request.path_params.get(param["name"])))
        for param in self.parameters.get("query", []):
            name = param["name"]
            if len(raw_query.getlist(name)) > 1 and param.get("schema", {}).get("type") != "array":
                violations.append(FieldViolation(name, "duplicate", "must be given once"))
            else:
                violations.extend(self._check(param, request.query_params.get(name)))
        if violations:
            count = len(violations)
            noun = "parameter is" if count == 1 else "parameters are"
            raise ProblemError("invalid-request", f"{count} request {noun} invalid", errors=violations)

    def _check(self, param: dict, value: Any) -> list[FieldViolation]:
        name = param["name"]
        if value is None:
            if param.get("required"):
                return [FieldViolation(name, "required", "is required")]
            return []
        schema = param.get("schema", param)
        violations = []
        seen: set[str] = set()
        for error in _schema_validator(schema).iter_errors(value):
            code, description = describe(error, schema)
            if code not in seen:
                seen.add(code)
                violations.append(FieldViolation(name, code, description))
        return violations
