"""Request-parameter validation, compiled once per operation, that reports every violation.

Connexion's request-validation step builds a URI parser and a validator, and Connexion's validator a
jsonschema validator per parameter, on every request, and stops at the first error. Here each
operation's parameters (path, query, header and cookie alike) are compiled when the app is built: a
request only coerces each raw value to its schema's type and checks it with a validator made at
start-up. Every violation is reported, each with its field and a short code, in one `invalid-request`
problem; the typed values go on to the handler (`validated_arguments`).

It plugs into Connexion's middleware stack in place of its `RequestValidationMiddleware`, through the
`api_cls` / `make_operation` extension points that stack is built on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from connexion.middleware.abstract import RoutedAPI, RoutedMiddleware
from connexion.operations import AbstractOperation
from jsonschema import Draft4Validator, ValidationError
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from autional_sessions.http.schema_predicates import Predicate, surely_valid
from autional_sessions.problems.factory import FieldViolation, ProblemError
from autional_sessions.problems.languages import N_, Args, Message, Nn_

# Where the validated, typed arguments of a request travel from validation to the handler.
ARGUMENTS_EXTENSION = "autional_arguments"
_INVALID = Nn_(
    "invalid-request", "%(count)d request parameter is invalid", "%(count)d request parameters are invalid"
)
_FORMAT_CHECKER = Draft4Validator.FORMAT_CHECKER
_CHECKED_FORMATS = frozenset(_FORMAT_CHECKER.checkers)
_INTEGER = re.compile(r"-?[0-9]+")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def validated_arguments(scope: Scope) -> dict[str, Any]:
    return scope["extensions"][ARGUMENTS_EXTENSION]


# What a value of the wrong type must be, by JSON Schema type: whole texts, so that each translates whole.
_MUST_BE_TYPE: dict[str, str] = {
    "integer": N_("invalid-request", "must be an integer"),
    "number": N_("invalid-request", "must be a number"),
    "string": N_("invalid-request", "must be a string"),
    "boolean": N_("invalid-request", "must be true or false"),
    "array": N_("invalid-request", "must be an array"),
    "object": N_("invalid-request", "must be an object"),
}


def describe(error: ValidationError, schema: dict) -> tuple[str, Message, Args]:
    """(code, description, the description's arguments) for one jsonschema error, in words a caller
    understands; the description is an English gettext message id, translated when the problem is
    written."""
    kind = error.validator
    if kind == "type":
        type_name = str(schema.get("type", "value"))
        if type_name in _MUST_BE_TYPE:
            return "format", _MUST_BE_TYPE[type_name], {}
        return "format", N_("invalid-request", "must be of type %(type)s"), {"type": type_name}
    if kind in {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}:
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            return (
                "range",
                N_("invalid-request", "must be from %(minimum)s to %(maximum)s"),
                {"minimum": low, "maximum": high},
            )
        if low is not None:
            return "range", N_("invalid-request", "must be at least %(minimum)s"), {"minimum": low}
        return "range", N_("invalid-request", "must be at most %(maximum)s"), {"maximum": high}
    if kind in {"minLength", "maxLength"}:
        if "maxLength" in schema:
            return (
                "length",
                N_("invalid-request", "must be %(min_length)s to %(max_length)s characters long"),
                {"min_length": schema.get("minLength", 0), "max_length": schema["maxLength"]},
            )
        return (
            "length",
            N_("invalid-request", "must be at least %(min_length)s characters long"),
            {"min_length": schema["minLength"]},
        )
    if kind == "pattern":
        return "pattern", N_("invalid-request", "must match %(pattern)s"), {"pattern": schema["pattern"]}
    if kind == "enum":
        return (
            "enum",
            N_("invalid-request", "must be one of %(values)s"),
            {"values": ", ".join(map(str, schema["enum"]))},
        )
    if kind == "format":
        return (
            "format",
            N_("invalid-request", "must be a valid %(format)s"),
            {"format": str(schema.get("format"))},
        )
    return "invalid", N_("invalid-request", "is not valid (%(rule)s)"), {"rule": str(kind)}


def _coercer(schema: dict) -> Callable[[Any], Any]:
    """Raw text to the schema's type. Text that is not of the type stays text, so that the schema check
    reports it as the wrong type."""
    kind = schema.get("type")
    # Path parameters of a typed schema come already converted by Connexion's router.
    if kind == "integer":
        return lambda raw: int(raw) if isinstance(raw, str) and _INTEGER.fullmatch(raw) else raw
    if kind == "number":
        return lambda raw: float(raw) if isinstance(raw, str) and _NUMBER.fullmatch(raw) else raw
    if kind == "boolean":
        return lambda raw: {"true": True, "false": False}.get(raw, raw) if isinstance(raw, str) else raw
    return lambda raw: raw


# The one style of each location that `validate` parses: OpenAPI 3's default there.
_DEFAULT_STYLES = {"query": "form", "cookie": "form", "path": "simple", "header": "simple"}


@dataclass(frozen=True)
class _Parameter:
    name: str
    location: str  # path, query, header or cookie
    required: bool
    schema: dict
    validator: Draft4Validator
    # A quick yes ahead of the validator, for a simple schema (schema_predicates); None: the validator.
    surely_valid: Predicate | None
    coerce: Callable[[Any], Any]
    array: bool
    explode: bool

    @classmethod
    def compile(cls, spec: dict) -> _Parameter:
        location = spec["in"]
        # Refused at start-up rather than let through unchecked: a parameter described by `content` (a
        # media type, no schema) and the styles this step does not parse (matrix, label, spaceDelimited,
        # pipeDelimited, deepObject).
        if "schema" not in spec:
            raise ValueError(
                f"parameter {spec['name']!r} has no schema (`content` parameters are not validated here)"
            )
        style = spec.get("style", _DEFAULT_STYLES[location])
        if style != _DEFAULT_STYLES[location]:
            raise ValueError(
                f"parameter {spec['name']!r} has style {style!r}; in {location} only "
                f"{_DEFAULT_STYLES[location]!r} is validated here"
            )
        schema = spec["schema"]
        array = schema.get("type") == "array"
        return cls(
            name=spec["name"],
            location=location,
            required=bool(spec.get("required")),
            schema=schema,
            validator=Draft4Validator(schema, format_checker=_FORMAT_CHECKER),
            surely_valid=None if array else surely_valid(schema, _CHECKED_FORMATS),
            coerce=_coercer(schema.get("items", {}) if array else schema),
            array=array,
            # OpenAPI 3: form style (the query and cookie default) explodes by default; simple does not.
            explode=spec.get("explode", style == "form"),
        )

    def check(self, value: Any) -> list[FieldViolation]:
        if (self.surely_valid is not None and self.surely_valid(value)) or self.validator.is_valid(value):
            return []
        violations, seen = [], set()
        for error in self.validator.iter_errors(value):
            code, message, args = describe(
                error, self.schema.get("items", self.schema) if self.array else self.schema
            )
            if code not in seen:
                seen.add(code)
                violations.append(FieldViolation(self.name, code, message, args))
        return violations


class OperationParameters:
    """Every parameter of one operation, compiled once; `validate` runs per request."""

    def __init__(self, parameters: list[dict], *, strict: bool, security_query_params: list[str]) -> None:
        self._parameters = [_Parameter.compile(p) for p in parameters]
        self._strict = strict
        self._known_query = {p.name for p in self._parameters if p.location == "query"}
        self._known_query.update(security_query_params)
        self._defaults = {
            p.name: p.schema["default"] for p in self._parameters if "default" in p.schema and not p.required
        }
        self._needs_cookies = any(p.location == "cookie" for p in self._parameters)
        self._needs_headers = self._needs_cookies or any(p.location == "header" for p in self._parameters)

    def validate(self, scope: Scope) -> dict[str, Any]:
        """The request's arguments, typed, defaults filled in; or an `invalid-request` problem."""
        query: dict[str, list[str]] = {}
        for name, value in parse_qsl(
            scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True
        ):
            query.setdefault(name, []).append(value)
        headers: dict[str, str] = {}
        if self._needs_headers:  # decoded only for an operation that reads them
            for raw_name, raw_value in scope["headers"]:
                headers.setdefault(raw_name.decode("latin-1"), raw_value.decode("latin-1"))
        cookies = cookie_parser(headers.get("cookie", "")) if self._needs_cookies else {}
        path = scope.get("path_params", {})

        violations: list[FieldViolation] = []
        if self._strict:
            violations.extend(
                FieldViolation(name, "unknown", N_("invalid-request", "is not a parameter of this operation"))
                for name in sorted(query.keys() - self._known_query)
            )
        arguments = dict(self._defaults)
        for param in self._parameters:
            raw: Any
            if param.location == "query":
                values = query.get(param.name)
                if values and len(values) > 1 and not param.array:
                    # A repeated single-valued parameter is ambiguous (which one wins differs between
                    # proxies and frameworks: HTTP parameter pollution), so it is refused, not resolved.
                    violations.append(
                        FieldViolation(param.name, "duplicate", N_("invalid-request", "must be given once"))
                    )
                    continue
                raw = values if values is None or param.array else values[0]
            elif param.location == "path":
                raw = path.get(param.name)
            elif param.location == "header":
                raw = headers.get(param.name.lower())
            else:
                raw = cookies.get(param.name)
            if raw is None:
                if param.required:
                    violations.append(
                        FieldViolation(param.name, "required", N_("invalid-request", "is required"))
                    )
                continue
            if param.array:
                items = (
                    raw
                    if isinstance(raw, list) and param.explode
                    else ",".join(raw if isinstance(raw, list) else [raw]).split(",")
                )
                value: Any = [param.coerce(item) for item in items]
            else:
                value = param.coerce(raw)
            found = param.check(value)
            if found:
                violations.extend(found)
            else:
                arguments[param.name] = value
        if violations:
            raise ProblemError(
                "invalid-request", _INVALID, args={"count": len(violations)}, errors=violations
            )
        return arguments


class _ValidationOperation:
    def __init__(self, next_app: ASGIApp, operation: AbstractOperation, *, strict: bool) -> None:
        if operation.request_body:
            # Every operation of this API takes its input from parameters; a request body would need
            # Connexion's body validators, which this step does not run. Refuse at start-up rather than
            # let a body through unchecked.
            raise ValueError(f"{operation.operation_id}: request bodies are not validated by this server")
        security_query = [
            scheme["name"]
            for requirement in operation.security or []
            for name in requirement
            if (scheme := operation.security_schemes[name])["type"] == "apiKey" and scheme["in"] == "query"
        ]
        try:
            self._parameters = OperationParameters(
                operation.parameters, strict=strict, security_query_params=security_query
            )
        except ValueError as exc:
            raise ValueError(f"{operation.operation_id}: {exc}") from None
        self._next_app = next_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["extensions"][ARGUMENTS_EXTENSION] = self._parameters.validate(scope)
        await self._next_app(scope, receive, send)


class _ValidationAPI(RoutedAPI[_ValidationOperation]):
    def __init__(self, *args: Any, strict_validation: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._strict = strict_validation
        self.add_paths()

    def make_operation(self, operation: AbstractOperation) -> _ValidationOperation:
        return _ValidationOperation(self.next_app, operation, strict=self._strict)


class ParameterValidationMiddleware(RoutedMiddleware[_ValidationAPI]):
    """Connexion's request-validation step, with each operation's validation compiled once."""

    api_cls = _ValidationAPI
