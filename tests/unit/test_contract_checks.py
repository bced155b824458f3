"""The conformance suite's own parts, without a deployment: its plan, its forged tokens, its verdicts."""

from __future__ import annotations

import argparse
import json
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from autional_sessions import contract_command as runner
from contract_tests import catalogue
from contract_tests.deployment import Exchange
from contract_tests.expect import (
    LEAKS,
    CheckFailed,
    Findings,
    bearer_challenge,
    problem_violations,
    refused_token,
)
from contract_tests.report import Report
from contract_tests.tokens import (
    NONE_CASINGS,
    Minter,
    b64url_decode,
    default_algorithm,
    flip_signature,
    load_key,
    split,
)

# The check ids of the suite's interface (CHECKS.md, shared with the tests of faulty deployments).
INTERFACE_IDS = {
    "schema",
    *(
        f"token.{name}"
        for name in [
            "alg-none",
            "signature-tampered",
            "signature-stripped",
            "payload-swapped",
            "malformed",
            "oversized",
            "wrong-scheme",
            "expired",
            "not-yet-valid",
            "wrong-issuer",
            "wrong-audience",
            "missing-exp",
            "missing-sub",
            "foreign-key",
            "unknown-kid",
        ]
    ),
    "ownership.list-other",
    "ownership.revoke-other",
    "ownership.unknown-user",
    *(
        f"paging.{name}"
        for name in [
            "totals",
            "coverage",
            "page-size-invariance",
            "page-length",
            "navigation",
            "past-end",
            "order",
        ]
    ),
    *(f"listing.{name}" for name in ["owner", "active", "unexpired", "current"]),
    *(f"revocation.{name}" for name in ["one", "repeat", "token-refused", "others", "foreign"]),
    "problems.media-type",
    "problems.status",
    "problems.request-id",
    "headers.request-id-echo",
    "headers.no-store",
    "headers.retry-after",
    "problems.no-leak",
    "headers.cors",
}


def test_the_catalogue_holds_every_check_of_the_interface_once_with_its_requirement():
    ids = [check.id for check in catalogue.CHECKS]
    assert len(ids) == len(set(ids))
    assert set(ids) >= INTERFACE_IDS
    assert all(check.requirement and check.title for check in catalogue.CHECKS)


def test_select_globs_name_checks_and_a_glob_that_names_none_is_reported():
    assert catalogue.selected(["token.*"]) == {i for i in catalogue.BY_ID if i.startswith("token.")}
    assert catalogue.selected([]) == set(catalogue.BY_ID)
    assert catalogue.selected(["schema", "headers.cors"]) == {"schema", "headers.cors"}
    assert catalogue.unmatched(["token.*", "tokens.*"]) == ["tokens.*"]


def test_every_casing_of_none():
    assert len(set(NONE_CASINGS)) == 16
    assert {c.lower() for c in NONE_CASINGS} == {"none"}


def test_a_tampered_signature_differs_in_its_bytes_not_only_its_padding_bits():
    token = jwt.encode({"sub": "u"}, "k" * 32, algorithm="HS256")
    signature = token.rsplit(".", 1)[1]
    for index in (0, -1, 16):
        tampered = flip_signature(signature, index)
        original, changed = b64url_decode(signature), b64url_decode(tampered)
        assert len(original) == len(changed)
        assert sum(a != b for a, b in zip(original, changed, strict=True)) == 1


def test_a_minted_token_verifies_and_an_override_of_none_drops_the_claim():
    minter = Minter(b"s" * 32, "HS256", "https://issuer.test", "aud-test")
    claims = jwt.decode(
        minter.mint("usr_1", sid="sess_1"), b"s" * 32, algorithms=["HS256"], audience="aud-test"
    )
    assert claims["sub"] == "usr_1" and claims["sid"] == "sess_1" and claims["iss"] == "https://issuer.test"
    header, payload, _ = split(minter.mint("usr_1", exp=None))
    assert "exp" not in payload and header == {"alg": "HS256", "typ": "JWT"}


def test_the_key_files_algorithm(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("abc123\n")
    assert load_key(secret) == b"abc123"
    assert default_algorithm(load_key(secret)) == "HS256"
    for key, algorithm in (
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
        (ec.generate_private_key(ec.SECP384R1()), "ES384"),
    ):
        pem = tmp_path / f"{algorithm}.pem"
        pem.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        assert default_algorithm(load_key(pem)) == algorithm
        minted = Minter(load_key(pem), algorithm, None, None).mint("usr_1")
        assert jwt.decode(minted, key.public_key(), algorithms=[algorithm])["sub"] == "usr_1"


def exchange(status: int, body: object, headers: dict[str, str] | None = None, **kwargs) -> Exchange:
    return Exchange(
        method="GET",
        url="http://deployment.test/sessions/user/usr_1/sessions",
        request_headers=[("Authorization", "Bearer secret-token"), ("X-Request-ID", "r1")],
        status=status,
        headers=httpx.Headers(headers or {}),
        body=json.dumps(body).encode(),
        **kwargs,
    )


def problem(status: int) -> dict:
    return {
        "type": "https://autional.com/problems/invalid-token",
        "title": "Invalid Token",
        "status": status,
        "detail": "The token is malformed",
        "instance": "/sessions/user/usr_1/sessions",
        "code": 40100002,
        "i18n_key": "error.auth.invalid_token",
        "request_id": "r1",
        "timestamp": "2026-04-03T12:00:00Z",
        "service": "autional-sessions",
    }


CHALLENGE = (
    'Bearer realm="autional-sessions", error="invalid_token", error_description="The token is malformed"'
)
PROBLEM_JSON = {"content-type": "application/problem+json"}


def test_a_refusal_is_a_401_problem_with_an_invalid_token_challenge():
    refused = exchange(401, problem(401), {**PROBLEM_JSON, "www-authenticate": CHALLENGE})
    assert bearer_challenge(refused) == {
        "realm": "autional-sessions",
        "error": "invalid_token",
        "error_description": "The token is malformed",
    }
    assert refused_token(refused, "alg none") == []
    assert refused_token(exchange(200, {"items": []}), "alg none")[0].startswith("alg none: status 200")
    wrong_body = exchange(401, problem(403), {**PROBLEM_JSON, "www-authenticate": CHALLENGE})
    assert any("differs from the HTTP status" in v for v in refused_token(wrong_body, "x"))
    text_json = exchange(401, problem(401), {"content-type": "text/json", "www-authenticate": CHALLENGE})
    assert any("not application/problem+json" in v for v in refused_token(text_json, "x"))
    no_error = exchange(401, problem(401), {**PROBLEM_JSON, "www-authenticate": 'Bearer realm="x"'})
    assert refused_token(no_error, "x") == ['x: WWW-Authenticate error is None, expected "invalid_token"']
    assert refused_token(no_error, "x", error=None) == []


def test_a_failure_shows_curl_lines_with_the_token_filtered():
    findings = Findings()
    findings.add("alg none: status 200", exchange(200, {}))
    with pytest.raises(CheckFailed) as failed:
        findings.conclude()
    assert failed.value.reason == "alg none: status 200"
    curl = failed.value.exchanges[0].curl()
    assert "secret-token" not in curl
    assert curl == (
        "curl -X GET -H 'Authorization: Bearer [Filtered]' -H 'X-Request-ID: r1' "
        "http://deployment.test/sessions/user/usr_1/sessions"
    )


class _Report:
    """What pytest hands the report for one test of a check."""

    def __init__(self, outcome: str, when: str = "call", longrepr: object = None) -> None:
        self.passed, self.failed, self.skipped = (outcome == o for o in ("passed", "failed", "skipped"))
        self.when, self.longrepr, self.longreprtext, self.user_properties = when, longrepr, "", []


class _Call:
    def __init__(self, exc: BaseException | None = None) -> None:
        self.excinfo = SimpleNamespace(value=exc) if exc else None


def test_the_report_lists_every_check_with_one_verdict_each(tmp_path):
    report = Report("http://deployment.test", catalogue.selected(["token.*", "schema"]))
    report.record("token.alg-none", _Report("passed"), _Call())
    failure = CheckFailed("alg 'nOnE', empty signature: status 200", [exchange(200, {})])
    report.record("token.signature-tampered", _Report("failed"), _Call(failure))
    report.record(
        "token.expired", _Report("skipped", longrepr=("f", 1, "Skipped: needs the signing key")), _Call()
    )
    # A check of several tests (the schema) fails when one of them does.
    report.record("schema", _Report("passed"), _Call())
    report.record(
        "schema", _Report("failed"), _Call(AssertionError("ST301 deleted resource still available"))
    )
    report.write_json(str(tmp_path / "r.json"))
    report.write_junit(str(tmp_path / "r.xml"))

    checks = {c["id"]: c for c in json.loads((tmp_path / "r.json").read_text())["checks"]}
    assert list(checks) == [c.id for c in catalogue.CHECKS]
    assert checks["token.alg-none"]["outcome"] == "PASSED"
    assert checks["token.signature-tampered"] == {
        "id": "token.signature-tampered",
        "requirement": catalogue.BY_ID["token.signature-tampered"].requirement,
        "title": catalogue.BY_ID["token.signature-tampered"].title,
        "outcome": "FAILED",
        "reason": "alg 'nOnE', empty signature: status 200",
        "reproduce": [exchange(200, {}).curl()],
    }
    assert (checks["token.expired"]["outcome"], checks["token.expired"]["reason"]) == (
        "SKIPPED",
        "needs the signing key",
    )
    assert (checks["schema"]["outcome"], checks["schema"]["reason"]) == (
        "FAILED",
        "ST301 deleted resource still available",
    )
    assert (checks["token.malformed"]["outcome"], checks["token.malformed"]["reason"]) == (
        "SKIPPED",
        "not run",
    )
    assert (checks["headers.cors"]["outcome"], checks["headers.cors"]["reason"]) == (
        "SKIPPED",
        "not selected",
    )
    suite = ET.parse(tmp_path / "r.xml").getroot()
    assert (suite.get("tests"), suite.get("failures")) == (str(len(catalogue.CHECKS)), "2")
    assert any("FAILED" in line and "token.signature-tampered" in line for line in report.lines())


def parse(argv: list[str], env: dict[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    runner.add_arguments(parser, env)
    return parser.parse_args(argv)


def test_every_option_also_comes_from_its_environment_variable():
    env = {
        "AUTIONAL_CONTRACT_URL": "http://deployment.test",
        "AUTIONAL_CONTRACT_TOKEN": "t",
        "AUTIONAL_CONTRACT_USER_ID": "usr_1",
        "AUTIONAL_CONTRACT_OTHER_TOKEN": "t2",
        "AUTIONAL_CONTRACT_OTHER_USER_ID": "usr_2",
        "AUTIONAL_CONTRACT_SIGNING_KEY_FILE": "/key",
        "AUTIONAL_CONTRACT_ALGORITHM": "RS256",
        "AUTIONAL_CONTRACT_ISSUER": "iss",
        "AUTIONAL_CONTRACT_AUDIENCE": "aud",
        "AUTIONAL_CONTRACT_MAX_EXAMPLES": "7",
        "AUTIONAL_CONTRACT_JUNIT_XML": "j.xml",
        "AUTIONAL_CONTRACT_REPORT_JSON": "r.json",
    }
    args = parse([], env)
    assert (args.url, args.token, args.user_id, args.other_token, args.other_user_id) == (
        "http://deployment.test",
        "t",
        "usr_1",
        "t2",
        "usr_2",
    )
    assert (args.signing_key_file, args.algorithm, args.issuer, args.audience) == (
        "/key",
        "RS256",
        "iss",
        "aud",
    )
    assert (args.max_examples, args.junit_xml, args.report_json) == (7, "j.xml", "r.json")
    assert parse(["--token", "mine"], env).token == "mine"


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--url", "http://d.test", "--token", "t"], "needs --user-id"),
        (["--url", "http://d.test", "--user-id", "u"], "AUTIONAL_CONTRACT_TOKEN"),
        (["--token", "t"], "go with --url"),
        (
            ["--url", "http://d.test", "--user-id", "u", "--token", "t", "--other-token", "t2"],
            "--other-user-id",
        ),
        (["--url", "http://d.test", "--user-id", "u", "--signing-key-file", "/nonexistent"], "no such file"),
    ],
)
def test_options_that_do_not_go_together_are_refused(argv, problem):
    assert problem in (runner.usage_error(parse(argv, {})) or "")


def test_options_that_go_together_are_taken(tmp_path):
    key = tmp_path / "key"
    key.write_text("secret")
    argv = ["--url", "http://d.test", "--user-id", "u", "--signing-key-file", str(key), "--select", "token.*"]
    assert runner.usage_error(parse(argv, {})) is None


# What other stacks leak, each seen in a faulty deployment's problem `detail`.
LEAKED = [
    'pq: relation "user_sessions" does not exist',
    "Error 1064 (42000): You have an error in your SQL syntax; check the manual",
    "org.springframework.dao.EmptyResultDataAccessException: Incorrect result size: expected 1, actual 0",
    'org.postgresql.util.PSQLException: ERROR: invalid input syntax for type uuid: "x"',
    "runtime error: invalid memory address or nil pointer dereference",
    'sqlite3: near "contract": syntax error',
    "ORA-00942: table or view does not exist",
    "KeyError: 'sub'",
]


@pytest.mark.parametrize("text", LEAKED)
def test_a_leak_of_a_go_java_or_database_error_is_recognised(text):
    assert any(leak.search(text) for leak in LEAKS), text


def test_a_plain_problem_shows_no_leak_and_its_type_must_be_a_uri_reference():
    body = json.dumps(problem(404))
    assert not any(leak.search(body) for leak in LEAKS)
    for kind in ("https://autional.com/problems/x", "/problems/x", "about:blank", "urn:problem:x"):
        assert problem_violations(exchange(404, {**problem(404), "type": kind}, PROBLEM_JSON)) == []
    (violation,) = problem_violations(exchange(404, {**problem(404), "type": "Not Found"}, PROBLEM_JSON))
    assert "not a URI reference" in violation
