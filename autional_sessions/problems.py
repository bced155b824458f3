"""The problem factory: every error response of the service is made here.

The catalogue of problem types (status, business code, title, i18n key) is read from the contract's
`x-problem-types`, so the published spec and the server cannot disagree about them. Code anywhere in the
request path raises `ProblemError` with a type name and a detail; the error handlers in `app.py` turn it,
and every exception Connexion or Starlette raises, into an RFC 9457 response through `render`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connexion.lifecycle import ConnexionResponse

from autional_sessions.request_context import current_request

PROBLEM_MEDIA_TYPE = "application/problem+json"


@dataclass(frozen=True)
class ProblemType:
    name: str
    status: int
    code: int
    title: str
    i18n_key: str
    type_uri: str


@dataclass(frozen=True)
class FieldViolation:
    field: str
    code: str
    description: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "description": self.description}


class ProblemError(Exception):
    """An error a caller can cause, named by its problem type in the catalogue."""

    def __init__(
        self,
        type_name: str,
        detail: str,
        *,
        errors: Sequence[FieldViolation] = (),
        headers: Mapping[str, str] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.type_name = type_name
        self.detail = detail
        self.errors = tuple(errors)
        self.headers = dict(headers or {})
        self.retry_after = retry_after


class ProblemCatalogue:
    """Problem types by name, built once at start-up from the spec."""

    def __init__(self, types: Mapping[str, ProblemType], service_name: str) -> None:
        self._types = dict(types)
        self.service_name = service_name

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], base_uri: str, service_name: str) -> ProblemCatalogue:
        entries = spec["components"]["schemas"]["dto.Problem"]["x-problem-types"]
        types = {
            name: ProblemType(
                name=name,
                status=int(entry["status"]),
                code=int(entry["code"]),
                title=entry["title"],
                i18n_key=entry["i18n_key"],
                type_uri=base_uri + name,
            )
            for name, entry in entries.items()
        }
        return cls(types, service_name)

    def __getitem__(self, name: str) -> ProblemType:
        return self._types[name]

    def __iter__(self):
        return iter(self._types.values())

    def render(self, error: ProblemError) -> ConnexionResponse:
        """The one place a problem response is made."""
        ptype = self._types[error.type_name]
        ctx = current_request()
        body: dict[str, Any] = {
            "type": ptype.type_uri,
            "title": ptype.title,
            "status": ptype.status,
            "detail": error.detail,
            "instance": ctx.path,
            "code": ptype.code,
            "i18n_key": ptype.i18n_key,
            "request_id": ctx.request_id,
            "timestamp": utc_timestamp(),
            "service": self.service_name,
        }
        if ctx.span is not None:
            # The reference's form: a whole traceparent, here of this service's span of the request.
            body["trace_id"] = ctx.span.traceparent
            body["span_id"] = ctx.span.span_id
        if error.errors:
            body["errors"] = [v.as_dict() for v in error.errors]
        headers = dict(error.headers)
        if error.retry_after is not None:
            body["retry_after"] = error.retry_after
            headers["Retry-After"] = str(error.retry_after)
        return ConnexionResponse(
            status_code=ptype.status,
            mimetype=PROBLEM_MEDIA_TYPE,
            body=json.dumps(body, ensure_ascii=False).encode(),
            headers=headers,
        )


def utc_timestamp(moment: dt.datetime | None = None) -> str:
    """RFC 3339 in UTC with a 'Z', to the second, as every timestamp of the API is written."""
    moment = moment or dt.datetime.now(dt.UTC)
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
