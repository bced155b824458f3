"""The autional-sessions command line: migrate, seed, token, serve's refusals."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from autional_sessions.cli import main
from autional_sessions.config import Settings
from autional_sessions.db.models import Session, User
from autional_sessions.security.bearer_auth import TokenVerifier
from autional_sessions.testing import TEST_SECRET


@pytest.fixture
def env(monkeypatch, database_url):
    monkeypatch.setenv("AUTIONAL_DATABASE_URL", database_url)
    monkeypatch.setenv("AUTIONAL_JWT_SECRET", TEST_SECRET)
    for name in ("AUTIONAL_JWT_ISSUER", "AUTIONAL_JWT_AUDIENCE", "AUTIONAL_JWT_ALGORITHMS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_migrate_creates_the_schema_then_has_nothing_to_do(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("AUTIONAL_DATABASE_URL", f"sqlite:///{tmp_path / 'fresh.db'}")

    assert main(["migrate"]) == 0
    first = capsys.readouterr().out
    assert main(["migrate"]) == 0
    second = capsys.readouterr().out

    assert "applied 0001" in first and "applied 0002" in first
    assert "nothing to do" in second and "applied" not in second


def test_seed_writes_four_active_sessions_in_five_and_is_idempotent(
    env, database, capsys, find_active_sessions
):
    assert main(["seed", "--users", "3", "--sessions-per-user", "25"]) == 0
    assert main(["seed", "--users", "3", "--sessions-per-user", "25"]) == 0

    with database.connection_context():
        assert User.select().count() == 3
        assert Session.select().count() == 75
        assert {u.tenant_id for u in User.select()} == {"tnt_demo"}
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    for user in ("usr_0000000", "usr_0000001", "usr_0000002"):
        page = find_active_sessions(user, now, 1, 100)
        assert page is not None and page.total == 20
    assert "seeded 3 users" in capsys.readouterr().out


def test_seed_is_deterministic(env, database):
    main(["seed", "--users", "2", "--sessions-per-user", "10"])
    with database.connection_context():
        first = sorted(Session.select(Session.id, Session.device_id, Session.status, Session.ip).tuples())
        database.execute_sql("DELETE FROM sessions")
    main(["seed", "--users", "2", "--sessions-per-user", "10"])
    with database.connection_context():
        second = sorted(Session.select(Session.id, Session.device_id, Session.status, Session.ip).tuples())

    assert first == second


def test_token_is_signed_with_the_configured_key_issuer_and_audience(env, capsys):
    env.setenv("AUTIONAL_JWT_ISSUER", "https://auth.example")
    env.setenv("AUTIONAL_JWT_AUDIENCE", "sessions")

    assert main(["token", "--sub", "usr_0000001", "--ttl", "120"]) == 0
    token = capsys.readouterr().out.strip()

    claims = asyncio.run(TokenVerifier(Settings.from_env()).verify(token))
    assert claims["sub"] == "usr_0000001"
    assert claims["iss"] == "https://auth.example"
    assert claims["aud"] == "sessions"
    assert claims["exp"] - claims["iat"] == 120


def test_serve_refuses_a_short_secret(env, capsys):
    env.setenv("AUTIONAL_JWT_SECRET", "too-short")

    assert main(["serve", "--port", "1"]) == 2
    assert "at least 32" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"AUTIONAL_JWT_ALGORITHMS": "RS256"}, "AUTIONAL_JWT_PUBLIC_KEY_FILE"),
        (
            {"AUTIONAL_JWT_ALGORITHMS": "ES256", "AUTIONAL_JWT_PUBLIC_KEY_FILE": "/nonexistent.pem"},
            "AUTIONAL_JWT_PUBLIC_KEY_FILE",
        ),
        ({"AUTIONAL_RATE_LIMIT": "lots"}, "AUTIONAL_RATE_LIMIT"),
        ({"AUTIONAL_TRUSTED_PROXIES": "10.0.0.1/8"}, "AUTIONAL_TRUSTED_PROXIES"),
        ({"AUTIONAL_CORS_ORIGINS": "app.example.com"}, "AUTIONAL_CORS_ORIGINS"),
        ({"AUTIONAL_REDIS_URL": "memcached://x"}, "AUTIONAL_REDIS_URL"),
    ],
)
def test_serve_refuses_a_configuration_that_cannot_work_naming_the_variable(env, capsys, settings, named):
    for name, value in settings.items():
        env.setenv(name, value)

    assert main(["serve", "--port", "1"]) == 2
    assert named in capsys.readouterr().err


def test_a_bad_setting_is_reported_by_name(env, capsys):
    env.setenv("AUTIONAL_JWT_ALGORITHMS", "none")

    assert main(["token", "--sub", "usr_1"]) == 2
    assert "AUTIONAL_JWT_ALGORITHMS" in capsys.readouterr().err


def test_contract_test_needs_a_token(env, capsys):
    env.delenv("AUTIONAL_CONTRACT_TOKEN", raising=False)

    assert main(["contract-test", "--url", "http://127.0.0.1:9", "--user-id", "usr_1"]) == 2
    assert "AUTIONAL_CONTRACT_TOKEN" in capsys.readouterr().err
    assert main(["contract-test", "--url", "http://127.0.0.1:9", "--token", "t"]) == 2
    assert "--user-id" in capsys.readouterr().err


def test_contract_test_in_process_takes_no_token_or_user(env, capsys):
    # In process the suite signs its own tokens for its own seeded users; a token given here would be
    # silently unused, so it is refused instead.
    assert main(["contract-test", "--token", "t", "--user-id", "usr_1"]) == 2
    assert "--url" in capsys.readouterr().err


@pytest.mark.slow
def test_seed_writes_a_user_with_more_sessions_than_one_statement_can_bind(env, database):
    # 20,000 rows x 15 columns is far past SQLite's 32,766 bind variables a statement.
    assert main(["seed", "--users", "1", "--sessions-per-user", "20000"]) == 0

    with database.connection_context():
        assert Session.select().where(Session.user == "usr_0000000").count() == 20000


def test_the_version_is_the_contracts(capsys):
    from autional_sessions.spec import load_spec

    with pytest.raises(SystemExit) as exited:
        main(["--version"])

    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"autional-sessions {load_spec()['info']['version']}"


def test_commands_run_without_package_metadata(env, monkeypatch, capsys):
    # `python -m autional_sessions migrate` in a checkout that was never installed: --version is worked out
    # only when asked for, from the spec then.
    import importlib.metadata

    from autional_sessions.spec import load_spec

    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)

    assert main(["migrate"]) == 0
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"autional-sessions {load_spec()['info']['version']}"
