"""The `autional-sessions` command: migrate, seed, token, serve (and contract-test, docs build)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import warnings
from collections.abc import Sequence

from autional_sessions.config import ConfigError, Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ConfigError as exc:
        print(f"autional-sessions: configuration error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] == "autional_sessions":
            raise
        # The plain install has the command line only; each command imports what it needs when it runs.
        extras = args.extras(args) if callable(args.extras) else args.extras
        print(
            f"autional-sessions: {args.command} needs {exc.name}: pip install 'autional-sessions[{extras}]'",
            file=sys.stderr,
        )
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autional-sessions",
        description="Contract-first server for the Autional session-management API. "
        "Configuration comes from AUTIONAL_* environment variables (see README).",
    )
    parser.add_argument("--version", action=_Version, help="show the version and exit")
    # The extra each command needs beyond the plain install, named when its imports fail.
    parser.set_defaults(extras="server")
    sub = parser.add_subparsers(required=True, metavar="COMMAND", dest="command")

    p = sub.add_parser("migrate", help="create or upgrade the database schema")
    p.set_defaults(run=_migrate)

    p = sub.add_parser("seed", help="write deterministic demo users and sessions")
    p.add_argument("--users", type=_positive, default=10, metavar="N")
    p.add_argument("--sessions-per-user", type=_positive, default=25, metavar="M")
    p.set_defaults(run=_seed)

    p = sub.add_parser("token", help="print a JWT for a user, signed with the configured key")
    p.add_argument("--sub", required=True, metavar="USER_ID")
    p.add_argument("--ttl", type=_positive, default=3600, metavar="SECONDS")
    p.add_argument("--sid", metavar="SESSION_ID", help="the session the token belongs to (its sid claim)")
    p.add_argument(
        "--tenant", metavar="TENANT_ID", help="the tenant the token is for (AUTIONAL_TENANT_CLAIM)"
    )
    p.set_defaults(run=_token)

    p = sub.add_parser("serve", help="serve the API with uvicorn")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--workers",
        type=_positive,
        default=os.cpu_count() or 1,
        help="worker processes, each with its own event loop and database pool (default: one per CPU core, "
        "%(default)s here)",
    )
    p.add_argument(
        "--log-level",
        choices=["critical", "error", "warning", "info", "debug"],
        help="default: AUTIONAL_LOG_LEVEL, else info",
    )
    p.set_defaults(run=_serve)

    p = sub.add_parser(
        "contract-test",
        help="run the conformance suite, against a deployment or in process",
        description="Run the conformance suite (README, 'Contract tests against your deployment'): every "
        "check of the contract, each PASSED, FAILED or SKIPPED with its reason, against the API at --url; "
        "without --url, against this package's own server in process, on a throw-away SQLite database "
        "(AUTIONAL_TEST_DATABASE=postgresql: a throw-away PostgreSQL database). Exits 1 when a check fails; "
        "each failure shows curl lines that reproduce it.",
    )
    from autional_sessions.contract_command import add_arguments

    add_arguments(p)
    # Against a URL the suite needs no server; in process it runs one.
    p.set_defaults(run=_contract_test, extras=lambda args: "contract" if args.url else "server,contract")

    p = sub.add_parser("docs", help="the published API docs")
    docs = p.add_subparsers(required=True, metavar="DOCS_COMMAND")
    p = docs.add_parser(
        "build",
        help="write the API docs as a static site",
        description="Write the API reference (Swagger UI) and a page per problem type, all from openapi.yaml, "
        "as a static site that needs no network to build or to read: publish DIR, or open DIR/index.html.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="where to write the site (made if missing)")
    p.set_defaults(run=_docs_build)
    return parser


class _Version(argparse.Action):
    """--version, worked out only when asked for: every other command runs without package metadata
    (say `python -m autional_sessions migrate` in a checkout that was never installed)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        kwargs.update(nargs=0, default=argparse.SUPPRESS)
        super().__init__(option_strings, argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_args: object, **_kwargs: object) -> None:
        print(f"{parser.prog} {_version()}")
        parser.exit()


def _version() -> str:
    """The installed distribution's version, which the build reads from the spec's info.version; the
    spec's own in a checkout that was never installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("autional-sessions")
    except PackageNotFoundError:
        from autional_sessions.spec import load_spec

        return str(load_spec()["info"]["version"])


def _positive(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _open(settings: Settings):
    """The database for a maintenance command (migrate, seed).

    Without the statement timeout meant for requests: building an index or upserting a batch on a big
    table may rightly take longer than any request should.
    """
    from autional_sessions.db.maintenance import open_database

    return open_database(dataclasses.replace(settings, db_statement_timeout_ms=0))


def _migrate(args: argparse.Namespace) -> int:
    from autional_sessions.db.migrations import LATEST_VERSION, migrate

    applied = migrate(_open(Settings.from_env()))
    for migration in applied:
        print(f"applied {migration.version:04d} {migration.name}")
    print(f"schema is at version {LATEST_VERSION}" + ("" if applied else " (nothing to do)"))
    return 0


def _seed(args: argparse.Namespace) -> int:
    from autional_sessions.db.seed import seed

    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        rate = done / max(time.monotonic() - started, 1e-9)
        print(f"\rseeded {done:,}/{total:,} sessions ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True)

    written = seed(_open(Settings.from_env()), args.users, args.sessions_per_user, progress=progress)
    print(file=sys.stderr)
    print(
        f"seeded {args.users} users with {args.sessions_per_user} sessions each ({written} sessions) "
        f"in {time.monotonic() - started:.1f}s"
    )
    return 0


def _token(args: argparse.Namespace) -> int:
    from autional_sessions.security.bearer_auth import TokenVerifier

    settings = Settings.from_env()
    claims = {}
    if args.sid:
        claims["sid"] = args.sid
    if args.tenant:
        claims[settings.tenant_claim] = args.tenant
    print(TokenVerifier(settings).issue(args.sub, args.ttl, int(time.time()), **claims))
    return 0


# Connexion imports Starlette's test client, and Starlette warns there about the client's httpx transport:
# a dependency's test helper, nothing this service or its operators can change.
_TESTCLIENT_NOTICE = "Using `httpx` with `starlette.testclient`"


def _serve(args: argparse.Namespace) -> int:
    # Silenced in the serving processes only: this one, and its workers, which read PYTHONWARNINGS when they
    # start. Never on import of the package, which users' test environments do.
    warnings.filterwarnings("ignore", message=_TESTCLIENT_NOTICE)
    os.environ["PYTHONWARNINGS"] = ",".join(
        filter(None, (os.environ.get("PYTHONWARNINGS"), f"ignore:{_TESTCLIENT_NOTICE}"))
    )
    import uvicorn

    from autional_sessions.observability.metrics_dir import prepare_multiprocess_dir
    from autional_sessions.security.bearer_auth import TokenVerifier

    settings = Settings.from_env()
    # Refuse to start rather than reject every request later: a missing or weak secret, a public-key
    # algorithm with no key source, a PEM key no configured algorithm can use. (An OTEL_* setting that asks
    # for an export this service cannot do is refused by the settings; the workers set tracing up, each for
    # itself.)
    TokenVerifier(settings)
    # Before anything imports prometheus_client: every worker process counts into files of this
    # directory, and /metrics adds them up, whichever worker answers the scrape. One worker is this very
    # process (uvicorn runs the app in it), which counts in memory: no file written on every request.
    # Empty is unset: not the working directory, whose *.db files (a SQLite database) would be taken for stale
    # metrics and deleted.
    shared_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
    if args.workers > 1 or shared_dir:
        prepare_multiprocess_dir(shared_dir)
    else:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

    from autional_sessions.observability.log_format import configure_logging, uvicorn_log_config

    level = args.log_level or settings.log_level
    configure_logging(level, settings.log_format)
    uvicorn.run(
        "autional_sessions.http.app:create_app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=level,
        # The same JSON (or text) lines in every worker process.
        log_config=uvicorn_log_config(level, settings.log_format),
        # One line per request comes from the app's own access log, which names the route template and
        # never the raw path (user ids, session ids) or the query.
        access_log=False,
        # No banner naming the server software and its version to whoever asks.
        server_header=False,
        # The client address comes from the app's own trusted-proxy rules (AUTIONAL_TRUSTED_PROXIES),
        # not from uvicorn's, which trust X-Forwarded-For from 127.0.0.1 by default.
        proxy_headers=False,
        # In-flight requests get this long to finish after SIGTERM, then the workers stop.
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
    )
    return 0


def _contract_test(args: argparse.Namespace) -> int:
    from autional_sessions.contract_command import run

    return run(args)


def _docs_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from autional_sessions.docs.site import build_site

    out = Path(args.out)
    written = build_site(out)
    for path in written:
        print(f"wrote {path}")
    print(f"{len(written)} files in {out}; open {out / 'index.html'}")
    return 0
