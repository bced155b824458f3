"""Every problem `type` a response carries resolves, on the server that sent it, to the page that
explains it; and every problem the server can return is in the catalogue that feeds the pages."""

from __future__ import annotations

import ast
from pathlib import Path
from urllib.parse import urljoin

import pytest

from autional_sessions.http.error_handlers import FRAMEWORK_PROBLEM_TYPES
from autional_sessions.problems.factory import ProblemCatalogue
from autional_sessions.spec import load_spec
from tests.factories import add_user

ROOT = Path(__file__).resolve().parents[2]


def catalogue_names() -> set[str]:
    return {p.name for p in ProblemCatalogue.from_spec(load_spec(), "/problems/", "x")}


@pytest.mark.parametrize(
    ("path", "user"),
    [
        ("/sessions/user/usr_alice/sessions?page=0", "usr_alice"),
        ("/nowhere", None),
        ("/sessions/user/usr_bob/sessions", "usr_alice"),
    ],
)
def test_a_problems_type_uri_resolves_to_its_page(client, database, auth_headers, path, user):
    add_user("usr_alice")
    response = client.get(path, headers=auth_headers(user) if user else {})
    problem = response.json()

    page = client.get(urljoin(str(response.url), problem["type"]), follow_redirects=True)

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert problem["title"] in page.text and str(problem["code"]) in page.text


def test_every_problem_type_the_code_names_is_in_the_catalogue():
    # Every ProblemError("<type>", ...) in the service's code names a type of the spec's catalogue, so
    # no response can carry a type without a page.
    named = set()
    for path in [*ROOT.glob("autional_sessions/*.py"), *ROOT.glob("handlers/*.py"), *ROOT.glob("db/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                "ProblemError",
                "invalid_token",
            ):
                first = node.args[0] if node.args else None
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    named.add(first.value)
    named |= set(FRAMEWORK_PROBLEM_TYPES.values()) | {
        "missing-credentials",
        "service-unavailable",
        "internal-error",
    }

    assert named, "no ProblemError found: the scan is broken"
    assert named <= catalogue_names(), named - catalogue_names()
