from __future__ import annotations

import pytest

from autional_sessions.config import DEFAULT_DATABASE_URL, ConfigError, Settings


def test_defaults_from_an_empty_environment():
    settings = Settings.from_env({})

    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.jwt_algorithms == ("HS256",)
    assert settings.jwt_issuer is None
    assert settings.jwt_audience is None


def test_reads_every_documented_variable():
    settings = Settings.from_env(
        {
            "AUTIONAL_DATABASE_URL": "postgresql://app@db.internal:5432/sessions",
            "AUTIONAL_JWT_SECRET": "s" * 40,
            "AUTIONAL_JWT_ALGORITHMS": "HS256, HS512",
            "AUTIONAL_JWT_ISSUER": "https://auth.example",
            "AUTIONAL_JWT_AUDIENCE": "sessions",
            "AUTIONAL_DB_POOL_SIZE": "7",
        }
    )

    assert settings.database_url == "postgresql://app@db.internal:5432/sessions"
    assert settings.jwt_algorithms == ("HS256", "HS512")
    assert settings.jwt_issuer == "https://auth.example"
    assert settings.jwt_audience == "sessions"
    assert settings.db_pool_size == 7


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"AUTIONAL_JWT_ALGORITHMS": "none"}, "AUTIONAL_JWT_ALGORITHMS"),
        ({"AUTIONAL_JWT_ALGORITHMS": "RS1"}, "AUTIONAL_JWT_ALGORITHMS"),
        ({"AUTIONAL_JWT_MAX_BYTES": "10"}, "AUTIONAL_JWT_MAX_BYTES"),
        ({"AUTIONAL_JWT_ALGORITHMS": " , "}, "AUTIONAL_JWT_ALGORITHMS"),
        ({"AUTIONAL_DATABASE_URL": "mysql://x/y"}, "AUTIONAL_DATABASE_URL"),
        ({"AUTIONAL_DB_POOL_SIZE": "many"}, "AUTIONAL_DB_POOL_SIZE"),
        ({"AUTIONAL_DB_POOL_SIZE": "0"}, "AUTIONAL_DB_POOL_SIZE"),
        ({"AUTIONAL_VALIDATE_RESPONSES": "perhaps"}, "AUTIONAL_VALIDATE_RESPONSES"),
    ],
)
def test_a_bad_value_is_refused_with_the_variable_named(env, names):
    with pytest.raises(ConfigError, match=names):
        Settings.from_env(env)


def test_a_database_password_never_appears_in_a_message():
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"AUTIONAL_DATABASE_URL": "mysql://app:hunter2@db/x"})

    assert "hunter2" not in str(raised.value)


def test_a_short_hmac_secret_is_refused():
    with pytest.raises(ConfigError, match="at least 32"):
        Settings(jwt_secret="short").check_signing_key()


def test_a_missing_secret_is_refused():
    with pytest.raises(ConfigError, match="AUTIONAL_JWT_SECRET is not set"):
        Settings(jwt_secret="").check_signing_key()


def test_a_32_byte_secret_is_accepted_for_hs256():
    Settings(jwt_secret="k" * 32).check_signing_key()


@pytest.mark.parametrize(("algorithm", "needed"), [("HS384", 48), ("HS512", 64)])
def test_longer_hashes_need_longer_secrets(algorithm, needed):
    with pytest.raises(ConfigError, match=f"at least {needed}"):
        Settings(jwt_secret="k" * (needed - 1), jwt_algorithms=("HS256", algorithm)).check_signing_key()
    Settings(jwt_secret="k" * needed, jwt_algorithms=("HS256", algorithm)).check_signing_key()


def test_the_secret_is_not_in_the_settings_repr():
    assert "topsecret" not in repr(Settings(jwt_secret="topsecret" * 4))


def test_the_database_password_is_not_in_the_settings_repr():
    assert "hunter2" not in repr(Settings(database_url="postgresql://app:hunter2@db/sessions"))


def test_a_public_key_algorithm_without_a_key_source_is_refused_naming_both_variables():
    with pytest.raises(ConfigError) as raised:
        Settings(jwt_algorithms=("RS256",)).check_signing_key()

    assert "AUTIONAL_JWT_PUBLIC_KEY_FILE" in str(raised.value)
    assert "AUTIONAL_JWT_JWKS_URL" in str(raised.value)


def test_an_rs256_only_configuration_needs_no_hmac_secret():
    Settings(jwt_algorithms=("RS256",), jwt_jwks_url="https://idp.example/jwks.json").check_signing_key()


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"jwt_public_key_file": "k.pem", "jwt_jwks_url": "https://idp/jwks"}, "not both"),
        ({"jwt_algorithms": ("HS256",), "jwt_jwks_url": "https://idp/jwks"}, "AUTIONAL_JWT_JWKS_URL"),
        ({"jwt_jwks_url": "file:///etc/passwd"}, "AUTIONAL_JWT_JWKS_URL"),
    ],
)
def test_key_sources_that_cannot_work_are_refused(overrides, variable):
    values = {"jwt_secret": "k" * 32, "jwt_algorithms": ("HS256", "RS256"), **overrides}
    with pytest.raises(ConfigError, match=variable):
        Settings(**values).check_signing_key()
