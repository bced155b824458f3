"""The published API docs, built from openapi.yaml alone, so that they cannot drift from the contract.

`build_site` writes a static site that needs no network, neither to build nor to read: the API reference
is Swagger UI from the installed `swagger_ui_bundle` package, with the spec embedded in the page (browsers
refuse fetch() of file:// URLs, so a `url:` would not load from disk), and a page per problem type of the
spec's `x-problem-types` (`problems.pages`), which is where the `type` URI of every problem response points.

The running server serves the very same problem pages through `problem_routes`. Every link between pages
is relative, so the site works under any base path and from disk. A problem page lives at
`problems/<name>/index.html`, so its links are written for a page whose URL ends in `<name>/`; the server,
like a static host, redirects `problems/<name>` there.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import swagger_ui_bundle
import yaml
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from autional_sessions.problems.pages import (
    DEFAULT_PROBLEM_BASE_URI,
    catalogue_of,
    html_document,
    problems_index,
    render_problem_page,
)
from autional_sessions.spec import load_spec, spec_path

# What the reference page needs from the bundle: the standalone preset is left out with its top bar,
# whose "Explore" box exists to fetch specs from elsewhere.
_SWAGGER_ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png")

# The browser is told to load nothing from anywhere but the site itself, so that a mistake here, or in a
# later Swagger UI, fails visibly instead of reaching out to the network. `file:` stands beside 'self'
# for a page opened from disk, whose origin is opaque: CSP's 'self' need not match its own files there.
_REFERENCE_CSP = (
    "default-src 'none'; script-src 'self' file: 'unsafe-inline'; style-src 'self' file: 'unsafe-inline'; "
    "img-src 'self' file: data:; font-src 'self' file: data:; connect-src 'none'; base-uri 'none'; "
    "form-action 'none'"
)


def build_site(
    out_dir: Path, spec: dict | None = None, *, problem_base_uri: str = DEFAULT_PROBLEM_BASE_URI
) -> list[Path]:
    """Write the docs site into `out_dir` and return the files written. Files already there are kept or
    overwritten, never deleted: `out_dir` may be a directory the caller keeps other things in."""
    # The packaged contract file is published as it is (comments and all); a spec handed in is dumped.
    spec_yaml = spec_path().read_text(encoding="utf-8") if spec is None else None
    spec = load_spec() if spec is None else spec
    catalogue = catalogue_of(spec, problem_base_uri)
    files: dict[str, str] = {
        "index.html": _reference_page(spec),
        "openapi.json": json.dumps(spec, indent=2, ensure_ascii=False) + "\n",
        "openapi.yaml": spec_yaml or yaml.safe_dump(spec, sort_keys=False, allow_unicode=True),
        "problems/index.html": problems_index(spec, catalogue),
    }
    for problem in catalogue:
        files[f"problems/{problem.name}/index.html"] = render_problem_page(spec, problem, catalogue.languages)

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
    head = """<link rel="stylesheet" href="assets/swagger-ui.css">
<link rel="icon" type="image/png" href="assets/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="assets/favicon-16x16.png" sizes="16x16">
<style>
body { margin: 0; background: #fafafa; font-family: system-ui, sans-serif; }
.site-nav { padding: .6rem 1.25rem; background: #1b1b1b; font-size: .9rem; }
.site-nav a { color: #fff; margin-right: 1.25rem; }
</style>"""
    body = f"""<nav class="site-nav"><a href="problems/index.html">Problem types</a>
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
</script>"""
    return html_document(title, body, csp=_REFERENCE_CSP, head=head)


def problem_routes(
    spec: Mapping[str, Any], *, problem_base_uri: str = DEFAULT_PROBLEM_BASE_URI
) -> list[Route]:
    """GET routes serving the site's problem pages: `/problems/`, `/problems/<name>/` and their
    `index.html`. `/problems/<name>`, the form of a problem's `type` URI, redirects to `<name>/`, as a
    static host does for a directory: the pages' relative links only resolve from there."""
    # Built once: the pages only change with the spec, which is read once per process.
    catalogue = catalogue_of(spec, problem_base_uri)
    index = problems_index(spec, catalogue)
    pages = {problem.name: render_problem_page(spec, problem, catalogue.languages) for problem in catalogue}

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


def _script_json(value: Any) -> str:
    """JSON that cannot end its <script> element early: every <, > and & is escaped (as JSON allows
    inside strings, the only place they can occur), and so is every non-ASCII character."""
    text = json.dumps(value, ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
