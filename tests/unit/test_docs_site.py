"""The published docs are the spec: a page per problem type of `x-problem-types`, an API reference that
embeds the spec and loads nothing from elsewhere, relative links only, and a server that serves exactly
the pages of the static site."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from starlette.applications import Starlette
from starlette.testclient import TestClient

from autional_sessions.cli import main
from autional_sessions.config import Settings
from autional_sessions.docs.site import build_site, problem_routes
from autional_sessions.problems.pages import catalogue_of, render_problem_page
from autional_sessions.spec import load_spec, problem_types
from tests.html_page import elements, texts

SPEC = load_spec()
TYPES = problem_types(SPEC)
PAGE_HEADERS = {"cache-control": "public, max-age=3600", "x-content-type-options": "nosniff"}


def problem_page(spec: dict, name: str) -> str | None:
    """The page of one problem type, as the docs site writes it; None when the spec has no such type."""
    catalogue = catalogue_of(spec, Settings.problem_base_uri)
    try:
        problem = catalogue[name]
    except KeyError:
        return None
    return render_problem_page(spec, problem, catalogue.languages)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    build_site(out)
    return out


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(Starlette(routes=problem_routes(SPEC)))


def _text(page: str) -> str:
    return " ".join(texts(page, tag="body")[0].split())


def _embedded_spec(page: str) -> dict:
    (script,) = [e for e in elements(page) if e.attrs.get("id") == "openapi-spec"]
    assert script.tag == "script" and script.attrs["type"] == "application/json"
    return json.loads(script.text)


def test_build_site_returns_every_file_it_wrote(site):
    written = build_site(site)

    assert all(path.is_file() for path in written)
    relative = {path.relative_to(site).as_posix() for path in written}
    assert {"index.html", "openapi.json", "openapi.yaml", "problems/index.html"} <= relative
    assert {f"problems/{name}/index.html" for name in TYPES} <= relative
    assert {"assets/swagger-ui.css", "assets/swagger-ui-bundle.js"} <= relative


@pytest.mark.parametrize("name", list(TYPES))
def test_every_problem_type_has_a_page_naming_its_title_status_code_and_key(site, name):
    entry = TYPES[name]
    page = (site / "problems" / name / "index.html").read_text(encoding="utf-8")
    text = _text(page)

    assert texts(page, tag="h1") == [entry["title"]]
    assert f"{entry['status']} " in text
    assert str(entry["code"]) in text
    assert entry["i18n_key"] in text
    assert " ".join(entry["description"].replace("`", "").split()) in text
    assert f"{Settings.problem_base_uri}{name}" in text
    # Advice on what to do follows its heading, whatever the status.
    found = elements(page)
    heading = next(i for i, e in enumerate(found) if e.tag == "h2" and e.text == "What to do")
    advice = next(e for e in found[heading + 1 :] if e.tag == "p")
    assert len(advice.text.split()) >= 5


@pytest.mark.parametrize("name", list(TYPES))
def test_the_example_of_a_problem_page_is_a_problem_the_contract_allows(site, name):
    page = (site / "problems" / name / "index.html").read_text(encoding="utf-8")
    (example,) = texts(page, tag="pre")
    body = json.loads(example)

    # The $refs of dto.Problem resolve against a root that carries the spec's components.
    schema = {**SPEC["components"]["schemas"]["dto.Problem"], "components": SPEC["components"]}
    jsonschema.validate(body, schema)
    entry = TYPES[name]
    assert (body["status"], body["code"], body["i18n_key"], body["title"]) == (
        entry["status"],
        entry["code"],
        entry["i18n_key"],
        entry["title"],
    )


def test_the_index_lists_every_problem_type_with_a_link_to_its_page(site):
    page = (site / "problems" / "index.html").read_text(encoding="utf-8")
    links = {e.attrs["href"]: " ".join(e.text.split()) for e in elements(page) if e.tag == "a"}

    for name, entry in TYPES.items():
        assert links[f"{name}/index.html"] == entry["title"]
    assert len([row for row in elements(page) if row.tag == "tr"]) == len(TYPES) + 1  # and the header


def test_a_remedy_in_the_spec_replaces_the_advice_for_the_status():
    spec = copy.deepcopy(SPEC)
    spec["components"]["schemas"]["dto.Problem"]["x-problem-types"]["user-not-found"]["remedy"] = (
        "Create the user with `POST /users` first."
    )

    page = problem_page(spec, "user-not-found")

    assert page is not None
    assert "Create the user with <code>POST /users</code> first." in page
    assert "Create the user" not in (problem_page(SPEC, "user-not-found") or "")


def test_problem_page_of_an_unknown_name_is_none():
    assert problem_page(SPEC, "no-such-problem") is None
    assert problem_page(SPEC, "") is None


def _scripts(page: str) -> list:
    return [e for e in elements(page) if e.tag == "script"]


def test_the_reference_embeds_the_spec_and_turns_off_the_online_validator(site):
    page = (site / "index.html").read_text(encoding="utf-8")
    _data, bundle, start = _scripts(page)

    assert _embedded_spec(page) == json.loads(json.dumps(SPEC))
    assert bundle.attrs["src"] == "assets/swagger-ui-bundle.js"
    # The spec comes from the page, never from a URL: file:// pages cannot fetch, and nothing remote may.
    assert "spec: JSON.parse(" in start.text and "url:" not in start.text
    assert "validatorUrl: null" in start.text


def test_the_site_publishes_the_spec_beside_the_reference(site):
    assert json.loads((site / "openapi.json").read_text(encoding="utf-8")) == json.loads(json.dumps(SPEC))
    assert yaml.safe_load((site / "openapi.yaml").read_text(encoding="utf-8")) == SPEC


def test_every_link_and_asset_is_relative_and_inside_the_site(site):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) == len(TYPES) + 2

    for page in pages:
        for element in elements(page.read_text(encoding="utf-8")):
            for attribute in ("href", "src"):
                if attribute not in element.attrs:
                    continue
                url = urlsplit(element.attrs[attribute])
                where = f"{page.relative_to(site)}: <{element.tag} {attribute}={element.attrs[attribute]!r}>"
                assert not url.scheme and not url.netloc and not url.path.startswith("/"), where
                if url.path:
                    assert (page.parent / url.path).resolve().is_file(), where


def test_every_page_forbids_loading_from_elsewhere(site):
    for page in site.rglob("*.html"):
        (policy,) = [
            e.attrs["content"]
            for e in elements(page.read_text(encoding="utf-8"))
            if e.tag == "meta" and e.attrs.get("http-equiv", "").lower() == "content-security-policy"
        ]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        assert directives["default-src"] == "'none'", page
        for sources in directives.values():
            assert "http" not in sources and "*" not in sources, page


def test_markup_in_the_spec_cannot_break_out_of_the_embedded_spec(tmp_path):
    spec = copy.deepcopy(SPEC)
    hostile = "</script><script>alert(1)</script><!-- & \u2028"
    spec["info"]["description"] = hostile

    build_site(tmp_path, spec)
    page = (tmp_path / "index.html").read_text(encoding="utf-8")

    assert len(_scripts(page)) == 3
    assert "<script>alert" not in page
    assert _embedded_spec(page)["info"]["description"] == hostile


@pytest.mark.parametrize("name", list(TYPES))
def test_the_server_serves_the_pages_of_the_site(site, client, name):
    expected = (site / "problems" / name / "index.html").read_text(encoding="utf-8")

    for path in (f"/problems/{name}/", f"/problems/{name}/index.html"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert {k: response.headers[k] for k in PAGE_HEADERS} == PAGE_HEADERS
        assert response.text == expected


@pytest.mark.parametrize("name", list(TYPES))
def test_a_type_uri_redirects_to_its_page_whose_relative_links_resolve_from_there(client, name):
    response = client.get(f"/problems/{name}", follow_redirects=False)

    assert response.status_code == 308
    assert response.headers["location"] == f"{name}/"
    assert client.get(f"/problems/{name}").url.path == f"/problems/{name}/"


def test_the_server_serves_the_index_of_the_site(site, client):
    expected = (site / "problems" / "index.html").read_text(encoding="utf-8")

    for path in ("/problems/", "/problems/index.html", "/problems"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.text == expected
        assert {k: response.headers[k] for k in PAGE_HEADERS} == PAGE_HEADERS


@pytest.mark.parametrize(
    "path", ["/problems/no-such-problem", "/problems/no-such-problem/", "/problems/x/index.html"]
)
def test_the_server_answers_404_in_plain_text_for_an_unknown_problem(client, path):
    response = client.get(path, follow_redirects=False)

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_docs_build_command_writes_the_site_and_says_where(tmp_path, capsys):
    out = tmp_path / "published"

    assert main(["docs", "build", "--out", str(out)]) == 0

    printed = capsys.readouterr().out
    assert (out / "index.html").is_file()
    for name in TYPES:
        assert f"wrote {out / 'problems' / name / 'index.html'}" in printed
    assert f"open {out / 'index.html'}" in printed
