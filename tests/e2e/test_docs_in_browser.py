"""The published docs work where they will be read: in a browser, opened straight from disk, with no
network. Swagger UI has to run and render the operations of the spec from the page alone, and the
problem pages have to show their content.

Chromium runs headless with every request that is not file:// sent to a proxy that is not there, so
nothing can leave the machine; a page that tried would log a Content Security Policy violation or a
failed load, which the tests look for in the console.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

from autional_sessions.docs.site import build_site
from autional_sessions.spec import HTTP_METHODS, load_spec, problem_types
from autional_sessions.testing import service_missing
from tests.html_page import texts

pytestmark = pytest.mark.slow


# Swagger UI may put zero-width spaces in paths so that long ones wrap.
_ZERO_WIDTH_SPACE = "\u200b"


def _chromium_missing(reason: str) -> NoReturn:
    service_missing(
        "Chromium",
        f"Chromium is not available ({reason}); `make test` installs it, or apt-get install chromium",
    )


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        _chromium_missing("no `chromium` on PATH")
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    build_site(out)
    return out


def render(chromium: str, page: Path, profile: Path) -> tuple[str, list[str]]:
    """The page's DOM once its scripts have run, and the console messages it logged."""
    command = [
        chromium,
        "--headless",
        "--no-sandbox",  # as root, in a container
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        # Every request goes to a proxy nobody listens on, loopback ones too ("<-loopback>" takes them off
        # the default bypass list), so no request of the page, or of Chromium itself, leaves the machine.
        "--proxy-server=127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>",
        # Virtual time runs the page's scripts to idle without waiting for the wall clock.
        "--virtual-time-budget=10000",
        # The page's console messages go to stderr as INFO:CONSOLE lines.
        "--enable-logging=stderr",
        "--v=0",
        "--dump-dom",
        page.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"chromium exited with {result.returncode}:\n{result.stderr[-3000:]}"
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return result.stdout, console


def _attempted_loads(console: list[str]) -> list[str]:
    return [
        line
        for line in console
        if "Content Security Policy" in line or "Failed to load" in line or "net::ERR_" in line
    ]


def test_swagger_ui_renders_every_operation_from_disk_without_network(chromium, site, tmp_path):
    dom, console = render(chromium, site / "index.html", tmp_path / "profile")

    paths = [text.replace(_ZERO_WIDTH_SPACE, "") for text in texts(dom, css_class="opblock-summary-path")]
    summaries = texts(dom, css_class="opblock-summary-description")
    assert "/sessions/user/{user_id}/sessions" in paths, f"Swagger UI rendered no such path: {paths}"
    for path, item in load_spec()["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                assert path in paths
                assert operation["summary"] in summaries, f"{method.upper()} {path}: {summaries}"
    assert _attempted_loads(console) == []


def test_a_problem_page_renders_from_disk_without_network(chromium, site, tmp_path):
    name, entry = next(iter(problem_types(load_spec()).items()))

    dom, console = render(chromium, site / "problems" / name / "index.html", tmp_path / "profile")

    assert texts(dom, tag="h1") == [entry["title"]]
    assert f"{entry['status']} " in texts(dom, tag="dd")[0]
    assert _attempted_loads(console) == []


def test_the_problem_index_renders_from_disk_without_network(chromium, site, tmp_path):
    dom, console = render(chromium, site / "problems" / "index.html", tmp_path / "profile")

    titles = texts(dom, tag="a")
    for entry in problem_types(load_spec()).values():
        assert entry["title"] in titles
    assert _attempted_loads(console) == []
