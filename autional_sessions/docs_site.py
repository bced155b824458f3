"""The published API docs, built from openapi.yaml alone, so that they cannot drift from the contract.

`build_site` writes a static site that needs no network, neither to build nor to read: the API reference
is Swagger UI from the installed `swagger_ui_bundle` package, with the spec embedded in the page (browsers
refuse fetch() of file:// URLs, so a `url:` would not load from disk), and a page per problem type of the
spec's `x-problem-types`, which is where the `type` URI of every problem response points.

The running server serves the very same problem pages through `problem_routes`. Every link between pages
is relative, so the site works under any base path and from disk. A problem page lives at
`problems/<name>/index.html`, so its links are written for a page whose URL ends in `<name>/`; the server,
like a static host, redirects `problems/<name>` there.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any

import swagger_ui_bundle
import yaml
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from autional_sessions import SERVICE_NAME
from autional_sessions.config import Settings
from autional_sessions.i18n import Languages, Text, problem_texts
from autional_sessions.problems import ProblemCatalogue, ProblemType
from autional_sessions.spec import HTTP_METHODS, load_spec, spec_path

DEFAULT_PROBLEM_BASE_URI = Settings.problem_base_uri

# What the reference page needs from the bundle: the standalone preset is left out with its top bar,
# whose "Explore" box exists to fetch specs from elsewhere.
# A gettext placeholder, `%(name)s` or `%(name)d`.
_PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")
_SWAGGER_ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png")

# The browser is told to load nothing from anywhere but the site itself, so that a mistake here, or in a
# later Swagger UI, fails visibly instead of reaching out to the network. `file:` stands beside 'self'
# for a page opened from disk, whose origin is opaque: CSP's 'self' need not match its own files there.
_REFERENCE_CSP = (
    "default-src 'none'; script-src 'self' file: 'unsafe-inline'; style-src 'self' file: 'unsafe-inline'; "
    "img-src 'self' file: data:; font-src 'self' file: data:; connect-src 'none'; base-uri 'none'; "
    "form-action 'none'"
)
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


def build_site(
    out_dir: Path, spec: dict | None = None, *, problem_base_uri: str = DEFAULT_PROBLEM_BASE_URI
) -> list[Path]:
    """Write the docs site into `out_dir` and return the files written. Files already there are kept or
    overwritten, never deleted: `out_dir` may be a directory the caller keeps other things in."""
    # The packaged contract file is published as it is (comments and all); a spec handed in is dumped.
    spec_yaml = spec_path().read_text(encoding="utf-8") if spec is None else None
    spec = load_spec() if spec is None else spec
    catalogue = _catalogue(spec, problem_base_uri)
    files: dict[str, str] = {
        "index.html": _reference_page(spec),
        "openapi.json": json.dumps(spec, indent=2, ensure_ascii=False) + "\n",
        "openapi.yaml": spec_yaml or yaml.safe_dump(spec, sort_keys=False, allow_unicode=True),
        "problems/index.html": _problems_index(spec, catalogue),
    }
    for problem in catalogue:
        files[f"problems/{problem.name}/index.html"] = _problem_page(spec, problem, catalogue.languages)

    written = []
    for relative, text in files.items():
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    assets = Path(swagger_ui_bundle.swagger_ui_path)
    (out_dir / "assets").mkdir(parents=True, exist_ok=True)
    for name in _SWAGGER_ASSETS:
        written.append(Path(shutil.copyfile(assets / name, out_dir / "assets" / name)))
    return written


def _reference_page(spec: Mapping[str, Any]) -> str:
    """The API reference: Swagger UI over the spec embedded in the page, with nothing fetched."""
    title = f"{spec['info']['title']} {spec['info']['version']}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{_REFERENCE_CSP}">
<title>{html.escape(title)}</title>
<link rel="stylesheet" href="assets/swagger-ui.css">
<link rel="icon" type="image/png" href="assets/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="assets/favicon-16x16.png" sizes="16x16">
<style>
body {{ margin: 0; background: #fafafa; font-family: system-ui, sans-serif; }}
.site-nav {{ padding: .6rem 1.25rem; background: #1b1b1b; font-size: .9rem; }}
.site-nav a {{ color: #fff; margin-right: 1.25rem; }}
</style>
</head>
<body>
<nav class="site-nav"><a href="problems/index.html">Problem types</a>
<a href="openapi.json">openapi.json</a> <a href="openapi.yaml">openapi.yaml</a></nav>
<div id="swagger-ui"></div>
<script type="application/json" id="openapi-spec">{_script_json(spec)}</script>
<script src="assets/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  spec: JSON.parse(document.getElementById("openapi-spec").textContent),
  dom_id: "#swagger-ui",
  // No online validator badge: it sends the spec to validator.swagger.io.
  validatorUrl: null,
  // No "Try it out": beside these pages there is no API to send requests to.
  supportedSubmitMethods: [],
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
}});
</script>
</body>
</html>
"""


def problem_page(
    spec: Mapping[str, Any], name: str, *, problem_base_uri: str = DEFAULT_PROBLEM_BASE_URI
) -> str | None:
    """The page of one problem type, or None when the spec has no type of that name."""
    catalogue = _catalogue(spec, problem_base_uri)
    try:
        problem = catalogue[name]
    except KeyError:
        return None
    return _problem_page(spec, problem, catalogue.languages)


def problem_routes(
    spec: Mapping[str, Any], *, problem_base_uri: str = DEFAULT_PROBLEM_BASE_URI
) -> list[Route]:
    """GET routes serving the site's problem pages: `/problems/`, `/problems/<name>/` and their
    `index.html`. `/problems/<name>`, the form of a problem's `type` URI, redirects to `<name>/`, as a
    static host does for a directory: the pages' relative links only resolve from there."""
    # Built once: the pages only change with the spec, which is read once per process.
    catalogue = _catalogue(spec, problem_base_uri)
    index = _problems_index(spec, catalogue)
    pages = {problem.name: _problem_page(spec, problem, catalogue.languages) for problem in catalogue}

    async def show_index(_request: Request) -> Response:
        return _page_response(index)

    async def show_problem(request: Request) -> Response:
        page = pages.get(request.path_params["name"])
        return _unknown_problem() if page is None else _page_response(page)

    async def add_slash(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in pages:
            return _unknown_problem()
        # Relative, so the redirect holds behind any proxy prefix or host name.
        return RedirectResponse(f"{name}/", status_code=308, headers=_PAGE_HEADERS)

    async def index_add_slash(_request: Request) -> Response:
        return RedirectResponse("problems/", status_code=308, headers=_PAGE_HEADERS)

    # First match wins: the fixed paths come before the `{name}` ones that would also match them.
    return [
        Route("/problems", index_add_slash, methods=["GET"]),
        Route("/problems/", show_index, methods=["GET"]),
        Route("/problems/index.html", show_index, methods=["GET"]),
        Route("/problems/{name}/", show_problem, methods=["GET"]),
        Route("/problems/{name}/index.html", show_problem, methods=["GET"]),
        Route("/problems/{name}", add_slash, methods=["GET"]),
    ]


_PAGE_HEADERS = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}


def _page_response(page: str) -> Response:
    return HTMLResponse(page, headers=_PAGE_HEADERS)


def _unknown_problem() -> Response:
    return PlainTextResponse(
        "No problem type of this API has that name\n",
        status_code=404,
        headers={"X-Content-Type-Options": "nosniff"},
    )


def _catalogue(spec: Mapping[str, Any], problem_base_uri: str) -> ProblemCatalogue:
    # The server's own reading of the spec's problem types, so that the pages say what the server sends.
    return ProblemCatalogue.from_spec(spec, problem_base_uri, SERVICE_NAME)


def _entries(spec: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    return spec["components"]["schemas"]["dto.Problem"]["x-problem-types"]


def _problem_page(spec: Mapping[str, Any], problem: ProblemType, languages: Languages) -> str:
    entry = _entries(spec)[problem.name]
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
    return _document(f"{problem.title} ({problem.status}) — {spec['info']['title']}", body)


def _problems_index(spec: Mapping[str, Any], catalogue: ProblemCatalogue) -> str:
    rows = "\n".join(
        f'<tr><td><a href="{html.escape(p.name)}/index.html">{html.escape(p.title)}</a><br>'
        + "".join(
            f'<span lang="{language.tag}">{html.escape(language.text(p.title))}</span><br>'
            for language in catalogue.languages
            if language is not catalogue.languages.default
        )
        + f"<code>{html.escape(p.name)}</code></td><td>{p.status}</td><td>{p.code}</td>"
        f"<td><code>{html.escape(p.i18n_key)}</code></td>"
        f"<td>{_prose(_entries(spec)[p.name].get('description', ''))}</td></tr>"
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
    return _document(f"Problem types — {spec['info']['title']}", body)


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
    description = " ".join(_entries(spec)[problem.name].get("description", problem.title).split())
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


def _script_json(value: Any) -> str:
    """JSON that cannot end its <script> element early: every <, > and & is escaped (as JSON allows
    inside strings, the only place they can occur), and so is every non-ASCII character."""
    text = json.dumps(value, ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _document(title: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{_PROBLEM_CSP}">
<title>{html.escape(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
{body}
</body>
</html>
"""
