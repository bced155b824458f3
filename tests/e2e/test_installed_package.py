"""The package as its users install it: one top-level import name, extras that keep the server's install
free of test tools and the harness's free of database drivers, and the shipped contract suite working
from an install, in process and against a URL.

An install is simulated without a network: the wheel is built from this checkout with hatchling and
installed (without dependencies) into a fresh venv, whose dependencies are the files of exactly the
distributions an extra pulls in, taken from the environment running the tests. A module outside that set
is absent from the venv, as it would be after `pip install autional-sessions[extra]`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import time
import zipfile
from collections.abc import Iterable, Iterator
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from autional_sessions.testing import TEST_AUDIENCE, TEST_ISSUER, TEST_SECRET
from tests.checkout import REPO, checkout_env
from tests.postgres.support import READY_SECONDS, free_port

pytestmark = pytest.mark.slow

TEST_TOOLS = {"pytest", "hypothesis", "schemathesis", "pytest-timeout", "ruff"}
DATABASE_DRIVERS = {
    "asyncpg",
    "psycopg",
    "psycopg-binary",
    "psycopg-c",
    "psycopg2",
    "psycopg2-binary",
    "peewee",
}
USER = "usr_0000001"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(out)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (built,) = out.glob("autional_sessions-*.whl")
    return built


def wheel_requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        message = Parser().parsestr(archive.read(name).decode())
    return [Requirement(line) for line in message.get_all("Requires-Dist") or []]


def applies(requirement: Requirement, extras: Iterable[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in (*extras, ""))


def distributions_for(wheel: Path, extras: set[str]) -> set[str]:
    """Every distribution `pip install autional-sessions[extras]` installs besides the package itself,
    following the requirements of the distributions installed here."""
    found: set[str] = set()
    todo = [(r, set(r.extras)) for r in wheel_requirements(wheel) if applies(r, extras)]
    while todo:
        requirement, wanted = todo.pop()
        name = canonicalize_name(requirement.name)
        if name == "autional-sessions":  # an extra naming others, as dev does
            todo += [(r, set(r.extras)) for r in wheel_requirements(wheel) if applies(r, wanted)]
            continue
        if name in found:
            continue
        found.add(name)
        try:
            requires = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            pytest.fail(f"{requirement.name} is required but not installed here; run `make setup`")
        todo += [(r, set(r.extras)) for r in map(Requirement, requires) if applies(r, wanted)]
    return found


def test_the_wheel_has_one_top_level_name_and_the_whole_package(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"autional_sessions"}
    for module in (
        "openapi.yaml",
        "schemathesis.toml",
        "handlers/sessions.py",
        "db/store.py",
        "db/migrations.py",
        "contract_tests/conftest.py",
        "contract_tests/test_contract.py",
        "testing.py",
        # The compiled catalogue the server reads, and the template the docs' problem pages list texts from.
        "problems/locale/zh_CN/LC_MESSAGES/messages.mo",
        "problems/locale/messages.pot",
    ):
        assert f"autional_sessions/{module}" in names, module


def build(target: str, source: Path, out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", target, "-d", str(out)],
        cwd=source,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (built,) = out.glob("autional_sessions-*.tar.gz" if target == "sdist" else "autional_sessions-*.whl")
    return built


def git_files(*options: str) -> set[str]:
    listing = subprocess.run(
        ["git", "ls-files", *options], cwd=REPO, capture_output=True, text=True, check=True
    )
    return set(listing.stdout.splitlines())


def test_the_sdist_mirrors_the_repository_and_builds_the_same_wheel(wheel, tmp_path):
    sdist = build("sdist", REPO, tmp_path / "sdist")
    with tarfile.open(sdist) as archive:
        members = archive.getmembers()
        archive.extractall(tmp_path / "unpacked", filter="data")
    (top,) = {m.name.split("/")[0] for m in members}
    files = {m.name.removeprefix(f"{top}/") for m in members if m.isfile()}

    assert [m.name for m in members if m.issym() or m.islnk()] == []
    # The repository's files where the repository has them: the top-level folders, not copies in the package.
    assert {"openapi.yaml", "db/store.py", "handlers/sessions.py", "contract_tests/test_contract.py"} <= files
    assert not {f for f in files if f.startswith(("autional_sessions/db/", "autional_sessions/handlers/"))}
    # Every tracked file, and nothing else but what git would track (files not yet added) and the sdist's own.
    assert git_files() <= files <= git_files() | git_files("--others", "--exclude-standard") | {"PKG-INFO"}
    # Built from the sdist, as pip builds it on a machine without the repository: the same wheel.
    rebuilt = build("wheel", tmp_path / "unpacked" / top, tmp_path / "rebuilt")
    with zipfile.ZipFile(wheel) as ours, zipfile.ZipFile(rebuilt) as theirs:
        assert sorted(theirs.namelist()) == sorted(ours.namelist())


def test_the_server_extra_installs_no_test_tools(wheel):
    server = distributions_for(wheel, {"server"})
    assert {"connexion", "uvicorn", "asyncpg", "psycopg", "peewee"} <= server
    assert not server & TEST_TOOLS
    # psycopg 3 without a bundled libpq, as its maintainers advise for production; psycopg2-binary is
    # only the benchmark yardstick's (the `bench` extra).
    assert not server & {"psycopg-binary", "psycopg2", "psycopg2-binary"}


def test_the_contract_extra_installs_no_database_drivers(wheel):
    contract = distributions_for(wheel, {"contract"})
    assert {"schemathesis", "pytest", "hypothesis"} <= contract
    assert not contract & DATABASE_DRIVERS


def test_every_dependency_is_pinned_in_the_constraints_within_its_range(wheel):
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    for requirement in wheel_requirements(wheel):
        name = canonicalize_name(requirement.name)
        if name == "autional-sessions":
            continue
        assert name in pins, f"{requirement.name} has no pin in constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject's {requirement}"
        )


def install(wheel: Path, root: Path, extras: set[str]) -> Path:
    """A venv with the wheel installed and, for dependencies, only the distributions of `extras`: each
    one's top-level files linked into a directory the venv has on its path. Returns the venv's bin."""
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=120)
    bin_dir = root / "venv" / "bin"
    subprocess.run(
        [bin_dir / "python", "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    deps = root / "deps"
    deps.mkdir()
    here = Path(sysconfig.get_paths()["purelib"])
    for name in distributions_for(wheel, extras):
        dist = metadata.distribution(name)
        tops = {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops - {"__pycache__"}:
            if (here / top).exists() and not (deps / top).exists() and not top.endswith(".pth"):
                (deps / top).symlink_to(here / top)
    venv_site = Path(
        subprocess.run(
            [bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (venv_site / "extras_under_test.pth").write_text(f"{deps}\n")
    return bin_dir


def installed_env(**overrides: str) -> dict[str, str]:
    """The environment of a user's shell: nothing of this checkout or of the test run's venv on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    env.update(overrides)
    return env


def run(bin_dir: Path, *args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "autional-sessions"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def imports_from(bin_dir: Path, module: str, cwd: Path) -> str:
    code = f"import {module} as m; print(m.__file__)"
    return subprocess.run(
        [str(bin_dir / "python"), "-c", code], cwd=cwd, env=installed_env(), capture_output=True, text=True
    ).stdout.strip()


@pytest.mark.parametrize(
    ("command", "extras"),
    [
        (["migrate"], "server"),
        (["serve"], "server"),
        (["contract-test", "--url", "http://127.0.0.1:9", "--token", "t", "--user-id", USER], "contract"),
        (["contract-test"], "server,contract"),
    ],
)
def test_a_plain_install_names_the_extra_a_command_needs_in_one_line(wheel, tmp_path, command, extras):
    bin_dir = install(wheel, tmp_path, set())

    done = run(bin_dir, *command, cwd=tmp_path, env=installed_env(AUTIONAL_JWT_SECRET=TEST_SECRET))

    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"autional-sessions: {command[0]} needs ")
    assert line.endswith(f"pip install 'autional-sessions[{extras}]'")
    assert run(bin_dir, "--version", cwd=tmp_path, env=installed_env()).stdout.startswith(
        "autional-sessions "
    )


@pytest.fixture
def installed_server(wheel: Path, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """The server from a `[server]` install, serving a seeded SQLite database: (its URL, a token for USER,
    the install's bin directory)."""
    bin_dir = install(wheel, tmp_path / "server", {"server"})
    assert imports_from(bin_dir, "pytest", tmp_path) == ""
    env = installed_env(
        AUTIONAL_DATABASE_URL=f"sqlite:///{tmp_path / 'sessions.db'}",
        AUTIONAL_JWT_SECRET=TEST_SECRET,
        AUTIONAL_JWT_ISSUER=TEST_ISSUER,
        AUTIONAL_JWT_AUDIENCE=TEST_AUDIENCE,
        AUTIONAL_LOG_FORMAT="text",
    )
    for args in (("migrate",), ("seed", "--users", "3", "--sessions-per-user", "25")):
        result = run(bin_dir, *args, cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
    token = run(bin_dir, "token", "--sub", USER, "--ttl", "3600", cwd=tmp_path, env=env).stdout.strip()
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [str(bin_dir / "autional-sessions"), "serve", "--port", str(port), "--workers", "1"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_SECONDS
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.1)
        yield url, token, bin_dir
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_a_server_install_serves_and_a_contract_install_tests_it_against_its_url(
    wheel, tmp_path, installed_server
):
    url, token, server_bin = installed_server
    listed = httpx.get(f"{url}/sessions/user/{USER}/sessions", headers={"Authorization": f"Bearer {token}"})
    assert listed.status_code == 200 and listed.json()["total"] > 0
    problem = httpx.get(f"{url}/sessions/user/{USER}/sessions", headers={"Accept-Language": "zh-CN"})
    assert problem.headers["content-language"] == "zh-CN"
    # The docs, built from the install alone: the problem pages list their texts in each language.
    built = run(
        server_bin, "docs", "build", "--out", str(tmp_path / "site"), cwd=tmp_path, env=installed_env()
    )
    assert built.returncode == 0, built.stderr
    page = (tmp_path / "site" / "problems" / "missing-credentials" / "index.html").read_text()
    assert "The request carries no bearer token" in page and "请求未携带 Bearer 令牌" in page

    bin_dir = install(wheel, tmp_path / "contract", {"contract"})
    for driver in ("asyncpg", "psycopg", "peewee"):
        assert imports_from(bin_dir, driver, tmp_path) == "", f"{driver} is importable"
    env = installed_env(AUTIONAL_CONTRACT_TOKEN=token)
    result = run(
        bin_dir,
        "contract-test",
        "--url",
        url,
        "--user-id",
        USER,
        "--max-examples",
        "3",
        "--report-json",
        str(tmp_path / "live.json"),
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    # With one token every check runs but those that need the signing key or a second user, which say why.
    outcomes = check_outcomes(tmp_path / "live.json")
    assert outcomes["schema"] == "PASSED" and outcomes["token.alg-none"] == "PASSED", outcomes
    assert "FAILED" not in outcomes.values(), outcomes


def test_the_installed_contract_suite_runs_in_process(wheel, tmp_path):
    bin_dir = install(wheel, tmp_path / "both", {"server", "contract"})
    # The installed copy, not this checkout, is what runs.
    assert imports_from(bin_dir, "autional_sessions", tmp_path).startswith(str(tmp_path / "both" / "venv"))
    env = installed_env(AUTIONAL_TEST_DATABASE="sqlite")
    report = tmp_path / "in-process.json"
    # A budget at which the fuzzing reaches every fault user (the status gate needs their 500, 503 and 429):
    # generation also draws on constants of the loaded code, so the installed copy generates other cases
    # than the checkout, and at 3 or 10 examples it never reached the throttled user's 429.
    result = run(
        bin_dir, "contract-test", "--max-examples", "30", "--report-json", str(report), cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    # In process the suite has the key and every user it needs: every check of the plan ran and passed.
    outcomes = check_outcomes(report)
    assert set(outcomes.values()) == {"PASSED"}, outcomes
    # The stateful and fault statuses were reached in process: the fault users' 500 and 503.
    assert "500" in result.stdout and "503" in result.stdout
    # The stateful and fault statuses were reached in process: the fault users' 500 and 503.
    assert "500" in result.stdout and "503" in result.stdout


def check_outcomes(report: Path) -> dict[str, str]:
    """Each check id of a contract-test JSON report with its outcome."""
    return {check["id"]: check["outcome"] for check in json.loads(report.read_text())["checks"]}


def test_subprocesses_of_the_tests_run_this_checkout_over_an_installed_copy(tmp_path):
    decoy = tmp_path / "site" / "autional_sessions"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise ImportError('an installed copy, not the checkout')\n")
    env = checkout_env({**os.environ, "PYTHONPATH": str(decoy.parent)})
    result = subprocess.run(
        [sys.executable, "-c", "import autional_sessions; print(autional_sessions.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(result.stdout.strip()).resolve() == REPO / "autional_sessions" / "__init__.py"
