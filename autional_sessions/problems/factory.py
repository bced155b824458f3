"""The problem factory: every error response of the service is made here.

The catalogue of problem types (status, business code, title, i18n key) is read from the contract's
`x-problem-types`, so the published spec and the server cannot disagree about them. Code anywhere in the
request path raises `ProblemError` with a type name and a detail; the error handlers (`http.error_handlers`) turn it,
and every exception Connexion or Starlette raises, into an RFC 9457 response through `render`.

A detail is an English text marked for translation (`languages.N_`), with named placeholders for the values of
the instance, which travel apart as `args`: `render` writes the title and the detail in the language the
request's `Accept-Language` chooses, and the values as `i18n_args`, so a client can write its own text.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connexion.lifecycle import ConnexionResponse

from autional_sessions.observability.request_context import current_request
from autional_sessions.problems.languages import Args, Language, Languages, Message, shipped_languages
from autional_sessions.spec import problem_types

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
    """One parameter's violation: `message` (an English gettext message id, `args` filling its
    placeholders) becomes the `description`, in the problem's language."""

    field: str
    code: str
    message: Message
    args: Args = dataclasses.field(default_factory=dict)

    @property
    def description(self) -> str:
        """The description in English, for logs and tests."""
        return shipped_languages().default.text(self.message, self.args)

    def as_dict(self, language: Language) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "description": language.text(self.message, self.args)}


class ProblemError(Exception):
    """An error a caller can cause, named by its problem type in the catalogue.

    `message` is the English detail, a gettext message id whose `%(name)s` placeholders `args` fills;
    `detail` is that text in English, for logs and tests. Never put a token, a key or a session id in
    `args`: they are sent back in every language.
    """

    def __init__(
        self,
        type_name: str,
        message: Message,
        *,
        args: Args | None = None,
        errors: Sequence[FieldViolation] = (),
        headers: Mapping[str, str] | None = None,
        retry_after: int | None = None,
    ) -> None:
        self.message = message
        self.i18n_args = dict(args or {})
        self.detail = shipped_languages().default.text(message, self.i18n_args)
        super().__init__(self.detail)
        self.type_name = type_name
        self.errors = tuple(errors)
        self.headers = dict(headers or {})
        self.retry_after = retry_after


class ProblemCatalogue:
    """Problem types by name, built once at start-up from the spec."""

    def __init__(
        self, types: Mapping[str, ProblemType], service_name: str, languages: Languages | None = None
    ) -> None:
        self._types = dict(types)
        self.service_name = service_name
        self.languages = languages or shipped_languages()

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], base_uri: str, service_name: str) -> ProblemCatalogue:
        entries = problem_types(spec)
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

    def render(self, error: ProblemError, accept_language: str | None = None) -> ConnexionResponse:
        """The one place a problem response is made, in the language `accept_language` (the request's
        `Accept-Language`) chooses."""
        ptype = self._types[error.type_name]
        ctx = current_request()
        language = self.languages.negotiate(accept_language)
        body: dict[str, Any] = {
            "type": ptype.type_uri,
            "title": language.text(ptype.title),
            "status": ptype.status,
            "detail": language.text(error.message, error.i18n_args),
            "instance": ctx.path,
            "code": ptype.code,
            "i18n_key": ptype.i18n_key,
            "request_id": ctx.request_id,
            "timestamp": utc_timestamp(),
            "service": self.service_name,
        }
        if error.i18n_args:
            body["i18n_args"] = error.i18n_args
        if ctx.span is not None:
            # The reference's form: a whole traceparent, here of this service's span of the request.
            body["trace_id"] = ctx.span.traceparent
            body["span_id"] = ctx.span.span_id
        if error.errors:
            body["errors"] = [v.as_dict(language) for v in error.errors]
        headers = dict(error.headers)
        headers["Content-Language"] = language.tag
        # Caches that keep problems (the server says no-store, but not every cache listens) must not
        # hand one language's text to a caller who asked for another.
        headers["Vary"] = "Accept-Language"
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
