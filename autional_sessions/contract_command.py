"""`autional-sessions contract-test`: its options, and pytest run on the contract suite with them.

Every option can come from an environment variable, AUTIONAL_CONTRACT_<OPTION> (AUTIONAL_CONTRACT_TOKEN,
AUTIONAL_CONTRACT_SIGNING_KEY_FILE, ...), so that secrets stay out of the process list and shell history.
Nothing here imports pytest, Schemathesis or the server until the command runs (the CLI builds its parser
from this module on every invocation), and nothing imports the suite itself: pytest does, under the one
name its place gives it (the suite checks --select against its catalogue).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

ENV_PREFIX = "AUTIONAL_CONTRACT_"
# The fuzzing budget of a default run: what keeps it within a minute against `make run`'s server on two
# cores. --max-examples deepens it; `make test` runs schemathesis.toml's own budget in process.
DEFAULT_MAX_EXAMPLES = 25
# The options, in the order of --help: (name, metavar, help). Each is also AUTIONAL_CONTRACT_<NAME>.
_OPTIONS = (
    (
        "url",
        "URL",
        "base URL of the deployment, e.g. https://sessions.example.com (default: in process, which needs the "
        "`server` extra as well as `contract`)",
    ),
    ("token", "TOKEN", "a bearer token the deployment accepts for --user-id"),
    ("user-id", "USER_ID", "the user the token belongs to (user A: use a disposable test user)"),
    ("other-token", "TOKEN", "a bearer token of a second test user (user B), for the ownership checks"),
    ("other-user-id", "USER_ID", "the second test user"),
    (
        "signing-key-file",
        "PATH",
        "the test issuer's HMAC secret or PEM private key: the suite then mints every token it needs "
        "(expired, for other users, with a sid for revocation, ...)",
    ),
    ("algorithm", "ALG", "the key's JWT algorithm (default: HS256 for a secret, from the key for PEM)"),
    ("issuer", "ISS", "the iss the deployment accepts (with the signing key)"),
    ("audience", "AUD", "the aud the deployment accepts (with the signing key)"),
)


def _env_name(option: str) -> str:
    return ENV_PREFIX + option.upper().replace("-", "_")


def add_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str] | None = None) -> None:
    env = os.environ if env is None else env
    for name, metavar, help_text in _OPTIONS:
        parser.add_argument(
            f"--{name}",
            metavar=metavar,
            default=env.get(_env_name(name)),
            help=f"{help_text} (${_env_name(name)})",
        )
    parser.add_argument(
        "--select",
        metavar="GLOB",
        action="append",
        help="run only the checks whose id matches (fnmatch, repeatable: --select 'token.*' --select schema); "
        f"the others are reported SKIPPED. ${_env_name('select')}: globs separated by commas or spaces",
    )
    budget = env.get(_env_name("max-examples"))
    parser.add_argument(
        "--max-examples",
        type=_positive,
        metavar="N",
        default=_positive(budget) if budget else None,
        help=f"the schema check's fuzzing budget per operation (default: {DEFAULT_MAX_EXAMPLES} against --url, "
        f"schemathesis.toml's in process) (${_env_name('max-examples')})",
    )
    parser.add_argument(
        "--junit-xml",
        metavar="PATH",
        default=env.get(_env_name("junit-xml")),
        help=f"also write the report as JUnit XML, one test case per check (${_env_name('junit-xml')})",
    )
    parser.add_argument(
        "--report-json",
        metavar="PATH",
        default=env.get(_env_name("report-json")),
        help=f"also write the report as JSON (${_env_name('report-json')})",
    )


def _split(value: str | None) -> list[str]:
    return [part for part in re.split(r"[,\s]+", value or "") if part]


def _positive(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def usage_error(args: argparse.Namespace) -> str | None:
    """What is wrong with the options as a whole, or None."""
    if args.url and not args.user_id:
        return "contract-test --url needs --user-id"
    if args.url and not (args.token or args.signing_key_file):
        return (
            "contract-test --url needs --token (or AUTIONAL_CONTRACT_TOKEN) or the signing key "
            "(--signing-key-file)"
        )
    if not args.url and any(
        getattr(args, name)
        for name in ("token", "user_id", "other_token", "other_user_id", "signing_key_file")
    ):
        return "--token, --user-id, --other-token, --other-user-id and --signing-key-file go with --url"
    if bool(args.other_token) and not args.other_user_id:
        return "--other-token needs --other-user-id"
    if (args.algorithm or args.issuer or args.audience) and not args.signing_key_file and args.url:
        return "--algorithm, --issuer and --audience go with --signing-key-file"
    if args.signing_key_file and not Path(args.signing_key_file).is_file():
        return f"--signing-key-file {args.signing_key_file}: no such file"
    return None


def run(args: argparse.Namespace) -> int:
    """pytest on the installed contract_tests package: the very suite `make test` runs in process."""
    if not args.select:
        args.select = _split(os.environ.get(_env_name("select")))
    if problem := usage_error(args):
        print(f"autional-sessions: {problem}", file=sys.stderr)
        return 2
    import importlib.util

    import pytest

    budget = args.max_examples or (DEFAULT_MAX_EXAMPLES if args.url else None)
    if budget:
        # The schema tests read their budget at import, when pytest collects them.
        os.environ["CONTRACT_MAX_EXAMPLES"] = str(budget)
    # Found, not imported: pytest imports the suite, under the one name its place gives it.
    (package,) = map(
        Path, importlib.util.find_spec("autional_sessions.contract_tests").submodule_search_locations
    )
    argv = [
        str(package),
        # Only the suite's own settings: none from the pytest configuration or conftest.py files of the
        # directory this runs in, and no pytest cache written there.
        "-c",
        os.devnull,
        "--rootdir",
        str(package),
        "--confcutdir",
        str(package),
        "-p",
        "no:cacheprovider",
        "-q",
        "-rfE",
        # Connexion's use of jsonschema's old API: a dependency's notice, of no use to the suite's user.
        "-W",
        "ignore:jsonschema.RefResolver is deprecated:DeprecationWarning",
        "-W",
        "ignore:jsonschema.exceptions.RefResolutionError is deprecated:DeprecationWarning",
        # Starlette's notice about its test client's transport, which the in-process run drives the app with.
        "-W",
        "ignore:Using `httpx` with `starlette.testclient`",
    ]
    for name in [name for name, _, _ in _OPTIONS] + ["report-json", "junit-xml"]:
        if value := getattr(args, name.replace("-", "_")):
            argv += [f"--contract-{name}", value]
    for pattern in args.select:
        argv += ["--contract-select", pattern]
    if not args.url:
        # The in-process target's fixtures (a throw-away database, settings, a token signer), shipped in the
        # package because an install has no conftest.py of the repository.
        argv += ["-p", "autional_sessions.testing"]
    # Hypothesis keeps its caches in ./.hypothesis by default: not in the caller's working directory.
    with tempfile.TemporaryDirectory(prefix="autional-contract-") as scratch:
        os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", scratch)
        code = int(pytest.main(argv))
    if code == pytest.ExitCode.USAGE_ERROR:  # the suite's own refusal of an option (a --select typo)
        return 2
    # pytest's "no tests collected" (5) when --select leaves nothing to run: no check failed.
    return 0 if code == pytest.ExitCode.NO_TESTS_COLLECTED else code
