"""The pages of the problem types: an index, and a page per type of the spec's `x-problem-types`, which is
where the `type` URI of every problem response points. The docs site (`docs.site.build_site`) writes them
and the running server (`docs.site.problem_routes`) serves them, from the same catalogue the server makes
its problems with, in every shipped language, so that the pages cannot drift from the responses.

A page lives at `problems/<name>/index.html`, so its links are written for a page whose URL ends in
`<name>/`.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from autional_sessions import SERVICE_NAME
from autional_sessions.config import Settings
from autional_sessions.problems.factory import ProblemCatalogue, ProblemType
from autional_sessions.problems.languages import Languages, Text, problem_texts
from autional_sessions.spec import HTTP_METHODS, problem_types

DEFAULT_PROBLEM_BASE_URI = Settings.problem_base_uri

# A gettext placeholder, `%(name)s` or `%(name)d`.
_PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")
_PROBLEM_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

# What a caller should do about a problem, by status, for an entry without its own `remedy`.
_REMEDIES = {
    400: "Fix the request: each entry of `errors` names a parameter (`field`), what is wrong with it "
    "(`code`) and what the contract expects (`description`). Correct all of them and send the request "
    "again; sent unchanged, it fails the same way.",
    401: "Get a new token from your identity provider (sign in again, or refresh it) and send it as "
    "`Authorization: Bearer <token>`. The `WWW-Authenticate` header says what was wrong with this one.",
    403: "Ask only for your own resources: the `user_id` in the path must be the `sub` of your token, and "
    "a user of your token's tenant. Retrying the same request does not help.",
    404: "Check the request against the API reference: the path must be one the API has, and what it "
    "names (a user, a session) must exist. Retrying the same request does not help.",
    405: "Send the request again with one of the methods the `Allow` header lists.",
    429: "Wait the number of seconds in the `Retry-After` header (also `retry_after` in the body) before "
    "the next request, and spread your requests out.",
    500: "Retry later. If it persists, report it and quote `request_id` (also in the `X-Request-ID` "
    "header): the response says nothing about the cause, on purpose, but the server's log does.",
    503: "Retry after the number of seconds in the `Retry-After` header (also `retry_after` in the body).",
}
_REMEDY_BY_CLASS = {
    4: "Correct the request before sending it again; sent unchanged, it fails the same way.",
    5: "Retry later. If it persists, report it and quote `request_id`.",
}

_STYLE = """
body { font: 16px/1.5 system-ui, sans-serif; color: #1b1b1b; max-width: 56rem; margin: 0 auto;
  padding: 1rem 1.5rem 3rem; }
nav { font-size: .9rem; margin-bottom: 1.5rem; }
a { color: #0b57d0; }
h1 { font-size: 1.8rem; margin-bottom: .25rem; }
code, pre { font: .9rem/1.4 ui-monospace, monospace; }
code { background: #f1f3f4; padding: 0 .2em; border-radius: 3px; }
pre { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: .75rem 1rem;
  white-space: pre-wrap; overflow-wrap: anywhere; }
pre code { background: none; padding: 0; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1.5rem; }
dt { font-weight: 600; }
dd { margin: 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid #d0d7de; vertical-align: top; }
td code { white-space: nowrap; }
.uri { color: #57606a; word-break: break-all; }
"""


def catalogue_of(spec: Mapping[str, Any], problem_base_uri: str) -> ProblemCatalogue:
    # The server's own reading of the spec's problem types, so that the pages say what the server sends.
    return ProblemCatalogue.from_spec(spec, problem_base_uri, SERVICE_NAME)


def render_problem_page(spec: Mapping[str, Any], problem: ProblemType, languages: Languages) -> str:
    entry = problem_types(spec)[problem.name]
    example = json.dumps(_example_problem(spec, problem), indent=2, ensure_ascii=False)
    body = f"""<nav><a href="../index.html">All problem types</a> ·
<a href="../../index.html">API reference</a></nav>
<main>
<h1>{html.escape(problem.title)}</h1>
<p class="uri"><code>{html.escape(problem.type_uri)}</code></p>
<dl>
<dt>HTTP status</dt><dd>{_status_text(problem.status)}</dd>
<dt><code>code</code></dt><dd>{problem.code}</dd>
<dt><code>i18n_key</code></dt><dd><code>{html.escape(problem.i18n_key)}</code></dd>
<dt><code>i18n_args</code></dt><dd>{_code_list(entry.get("i18n_args", ())) or "none"}</dd>
</dl>
<h2>In each language</h2>
<p>The <code>title</code> as the server writes it for each language that <code>Accept-Language</code> can
choose (the response's <code>Content-Language</code> says which); <code>detail</code> is written in the same
language, and its values are also in <code>i18n_args</code>.</p>
{_titles_table(problem, languages)}
{_texts_table(problem_texts().get(problem.name, ()), languages)}
<h2>When it happens</h2>
<p>{_prose(entry.get("description", ""))}</p>
<h2>What to do</h2>
<p>{_prose(_remedy(entry))}</p>
<h2>Example</h2>
<pre><code>{html.escape(example, quote=False)}</code></pre>
</main>"""
    return html_document(f"{problem.title} ({problem.status}) — {spec['info']['title']}", body)


def problems_index(spec: Mapping[str, Any], catalogue: ProblemCatalogue) -> str:
    rows = "\n".join(
        f'<tr><td><a href="{html.escape(p.name)}/index.html">{html.escape(p.title)}</a><br>'
        + "".join(
            f'<span lang="{language.tag}">{html.escape(language.text(p.title))}</span><br>'
            for language in catalogue.languages
            if language is not catalogue.languages.default
        )
        + f"<code>{html.escape(p.name)}</code></td><td>{p.status}</td><td>{p.code}</td>"
        f"<td><code>{html.escape(p.i18n_key)}</code></td>"
        f"<td>{_prose(problem_types(spec)[p.name].get('description', ''))}</td></tr>"
        for p in catalogue
    )
    body = f"""<nav><a href="../index.html">API reference</a></nav>
<main>
<h1>Problem types</h1>
<p>Every error of this API is an RFC 9457 problem (<code>application/problem+json</code>) whose
<code>type</code> is the address of one of these pages.</p>
<table>
<thead><tr><th>title and type</th><th>status</th><th>code</th><th>i18n_key</th><th>when</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
</main>"""
    return html_document(f"Problem types — {spec['info']['title']}", body)


def _titles_table(problem: ProblemType, languages: Languages) -> str:
    rows = "\n".join(
        f"<tr><td>{html.escape(language.locale.get_display_name(language.locale) or language.tag)} "
        f'<code>{language.tag}</code></td><td lang="{language.tag}">{html.escape(language.text(problem.title))}'
        "</td></tr>"
        for language in languages
    )
    return f"""<table>
<thead><tr><th>language (<code>Content-Language</code>)</th><th>title</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>"""


def _texts_table(texts: Sequence[Text], languages: Languages) -> str:
    """Every text the server writes as this type's `detail` (and, for an invalid request, as a
    parameter's `errors[].description`), in each language."""
    if not texts:
        return ""
    heads = "".join(
        f"<th>{html.escape(language.locale.get_display_name(language.locale) or language.tag)} "
        f"<code>{language.tag}</code></th>"
        for language in languages
    )
    rows = "\n".join(
        "<tr>"
        + "".join(
            f'<td lang="{language.tag}">{_shown(language.template(text))}</td>' for language in languages
        )
        + "</tr>"
        for text in texts
    )
    return f"""<p>The texts of <code>detail</code> (and of <code>errors[].description</code>) in each language;
<code>{{name}}</code> marks a value the server fills in, which a detail also gives in <code>i18n_args</code>.</p>
<table>
<thead><tr>{heads}</tr></thead>
<tbody>
{rows}
</tbody>
</table>"""


def _shown(template: str) -> str:
    """A text for reading: `%(user_id)s` shown as `{user_id}`."""
    return html.escape(_PLACEHOLDER.sub(r"{\1}", template))


def _code_list(names: Any) -> str:
    return ", ".join(f"<code>{html.escape(str(name))}</code>" for name in names)


def _remedy(entry: Mapping[str, Any]) -> str:
    """What a caller should do: the entry's own `remedy` when the spec gives one, else the advice for
    its status."""
    status = int(entry["status"])
    return entry.get("remedy") or _REMEDIES.get(status) or _REMEDY_BY_CLASS[status // 100]


def _example_problem(spec: Mapping[str, Any], problem: ProblemType) -> dict[str, Any]:
    """A problem body of this type as the server writes it, filled with the spec's own examples."""
    schemas = spec["components"]["schemas"]
    examples = {name: prop.get("example") for name, prop in schemas["dto.Problem"]["properties"].items()}
    # The first sentence of the description stands for the detail the server writes for one instance.
    description = " ".join(problem_types(spec)[problem.name].get("description", problem.title).split())
    detail = re.split(r"(?<=\.) ", description, maxsplit=1)[0].replace("`", "")
    body: dict[str, Any] = {
        "type": problem.type_uri,
        "title": problem.title,
        "status": problem.status,
        "detail": detail,
        "instance": _example_path(spec),
        "code": problem.code,
        "i18n_key": problem.i18n_key,
        "request_id": examples["request_id"],
        "timestamp": examples["timestamp"],
        "service": SERVICE_NAME,
    }
    if problem.status == 400:
        violation = schemas["dto.FieldViolation"]["properties"]
        body["errors"] = [{key: violation[key]["example"] for key in ("field", "code", "description")}]
    if problem.status in (429, 503):
        body["retry_after"] = spec["components"]["headers"]["Retry-After"]["example"]
    return body


def _example_path(spec: Mapping[str, Any]) -> str:
    """The first operation's path, with each path parameter replaced by its example."""
    path, item = next(iter(spec["paths"].items()))
    operation = next(item[method] for method in item if method in HTTP_METHODS)
    for parameter in [*item.get("parameters", []), *operation.get("parameters", [])]:
        if parameter.get("in") == "path" and "example" in parameter:
            path = path.replace("{" + parameter["name"] + "}", str(parameter["example"]))
    return path


def _status_text(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _prose(text: str) -> str:
    """Escaped text, with the spec's `code spans` shown as code (the only markup its entries use)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(" ".join(text.split())))


def html_document(title: str, body: str, *, csp: str = _PROBLEM_CSP, head: str = "") -> str:
    """A page of the docs: `body` under a head with `title`, the content security policy `csp`, the
    problem pages' style, or `head` in its place."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<title>{html.escape(title)}</title>
{head or f"<style>{_STYLE}</style>"}
</head>
<body>
{body}
</body>
</html>
"""
