"""Problems in the caller's language: every problem type, produced through the app, in Simplified Chinese
and in English, with the same status, code, type, i18n_key and i18n_args."""

from __future__ import annotations

import dataclasses
import html
import re
import time

import jsonschema
import pytest
from starlette.testclient import TestClient

from autional_sessions.db.errors import DatabaseUnavailable
from autional_sessions.http.app import create_app
from autional_sessions.problems.languages import problem_texts, shipped_languages
from autional_sessions.spec import load_spec, problem_types
from tests.factories import add_session, add_user, utcnow
from tests.spec_check import assert_conforms, documented_response

URL = "/sessions/user/{}/sessions"
ENTRIES = problem_types(load_spec())
CHINESE = shipped_languages().negotiate("zh-CN")
HAN = re.compile(r"[\u4e00-\u9fff]")
# The answers to requests no operation of the spec takes, checked against the problem response of one.
NO_OPERATION = {"route-not-found", "method-not-allowed"}


def conforming_body(response, type_name: str) -> dict:
    if type_name not in NO_OPERATION:
        return assert_conforms(response)
    documented = documented_response(400)
    jsonschema.validate(
        response.headers["Content-Language"], documented["headers"]["Content-Language"]["schema"]
    )
    body = response.json()
    jsonschema.validate(body, documented["content"]["application/problem+json"]["schema"])
    return body


@pytest.fixture
def alice(database):
    add_user("usr_alice", tenant_id="tnt_a")
    add_session("sess_alice_ended", "usr_alice", tenant_id="tnt_a", status="revoked", revoked_at=utcnow())


def _rate_limited(client, ctx, headers):
    limited = create_app(dataclasses.replace(ctx["settings"], rate_limit="1/minute"), store=ctx["store"])
    with TestClient(limited, raise_server_exceptions=False) as limited_client:
        auth = ctx["auth"]("usr_alice")
        limited_client.get(URL.format("usr_alice"), headers=auth)
        return limited_client.get(URL.format("usr_alice"), headers={**auth, **headers})


def _unavailable(client, ctx, headers):
    async def down(statement, params):
        raise DatabaseUnavailable("sqlite: unable to open database file")

    ctx["monkeypatch"].setattr(ctx["store"], "fetch", down)
    return client.get(URL.format("usr_alice"), headers={**ctx["auth"]("usr_alice"), **headers})


def _internal(client, ctx, headers):
    ctx["break_database"]()
    return client.get(URL.format("usr_alice"), headers={**ctx["auth"]("usr_alice"), **headers})


# type name -> (request, the i18n_args it must carry)
CASES = {
    "invalid-request": (
        lambda c, x, h: c.get(
            URL.format("usr_alice"),
            params={"page": 0, "page_size": 0},
            headers={**x["auth"]("usr_alice"), **h},
        ),
        {"count": 2},
    ),
    "missing-credentials": (lambda c, x, h: c.get(URL.format("usr_alice"), headers=h), {}),
    "invalid-token": (
        lambda c, x, h: c.get(URL.format("usr_alice"), headers={**x["auth"]("usr_alice", exp=None), **h}),
        {"claim": "exp"},
    ),
    "token-expired": (
        lambda c, x, h: c.get(
            URL.format("usr_alice"), headers={**x["auth"]("usr_alice", exp=int(time.time()) - 60), **h}
        ),
        {},
    ),
    "session-ended": (
        lambda c, x, h: c.get(
            URL.format("usr_alice"), headers={**x["auth"]("usr_alice", sid="sess_alice_ended"), **h}
        ),
        {},
    ),
    "user-mismatch": (
        lambda c, x, h: c.get(URL.format("usr_bob"), headers={**x["auth"]("usr_alice"), **h}),
        {},
    ),
    "tenant-mismatch": (
        lambda c, x, h: c.get(
            URL.format("usr_alice"), headers={**x["auth"]("usr_alice", tenant_id="tnt_b"), **h}
        ),
        {},
    ),
    "user-not-found": (
        lambda c, x, h: c.get(URL.format("usr_ghost"), headers={**x["auth"]("usr_ghost"), **h}),
        {"user_id": "usr_ghost"},
    ),
    "session-not-found": (
        lambda c, x, h: c.delete(
            URL.format("usr_alice") + "/sess_nowhere", headers={**x["auth"]("usr_alice"), **h}
        ),
        {},
    ),
    "route-not-found": (lambda c, x, h: c.get("/nowhere/at-all", headers=h), {"path": "/nowhere/at-all"}),
    "method-not-allowed": (
        lambda c, x, h: c.put(URL.format("usr_alice"), headers={**x["auth"]("usr_alice"), **h}),
        {"method": "PUT"},
    ),
    "rate-limited": (_rate_limited, None),
    "internal-error": (_internal, None),
    "service-unavailable": (_unavailable, None),
}


def test_every_problem_type_has_a_case():
    assert CASES.keys() == ENTRIES.keys()


@pytest.fixture
def ctx(alice, settings, store, auth_headers, monkeypatch, break_database):
    return {
        "settings": settings,
        "store": store,
        "auth": auth_headers,
        "monkeypatch": monkeypatch,
        "break_database": break_database,
    }


@pytest.mark.parametrize("type_name", list(CASES))
def test_every_problem_type_speaks_chinese_and_english_alike(client, ctx, type_name):
    send, expected_args = CASES[type_name]

    english = send(client, ctx, {"X-Request-ID": "req-en"})
    chinese = send(client, ctx, {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8", "X-Request-ID": "req-zh"})

    en_body, zh_body = conforming_body(english, type_name), conforming_body(chinese, type_name)
    assert zh_body["type"].endswith(f"/{type_name}")
    for field in ("type", "status", "code", "i18n_key"):
        assert zh_body[field] == en_body[field], field
    assert chinese.status_code == english.status_code == ENTRIES[type_name]["status"]
    assert (english.headers["Content-Language"], chinese.headers["Content-Language"]) == ("en", "zh-CN")
    assert "Accept-Language" in chinese.headers["Vary"]

    assert en_body["title"] == ENTRIES[type_name]["title"]
    assert zh_body["title"] == CHINESE.text(ENTRIES[type_name]["title"]) != en_body["title"]
    assert HAN.search(zh_body["title"]) and HAN.search(zh_body["detail"])
    assert not HAN.search(en_body["detail"])

    en_args, zh_args = en_body.get("i18n_args", {}), zh_body.get("i18n_args", {})
    assert set(zh_args) <= set(ENTRIES[type_name].get("i18n_args", ()))
    if expected_args is not None:
        assert en_args == zh_args == expected_args
    for name, value in zh_args.items():
        if name != "request_id":  # the one value that differs between the two requests
            assert str(value) in zh_body["detail"] and str(value) in en_body["detail"], name
    # The detail is one of the texts of this type, which its docs page lists in each language.
    assert zh_body["detail"] in {
        CHINESE.text(text, zh_args)
        for text in problem_texts()[type_name]
        if set(re.findall(r"%\((\w+)\)", text.singular)) <= zh_args.keys()
    }

    # Each parameter's violation: the same field and code, its description in the language too.
    assert [(e["field"], e["code"]) for e in zh_body.get("errors", [])] == [
        (e["field"], e["code"]) for e in en_body.get("errors", [])
    ]
    assert all(HAN.search(e["description"]) for e in zh_body.get("errors", []))
    assert not any(HAN.search(e["description"]) for e in en_body.get("errors", []))
    if type_name == "invalid-request":
        assert {e["description"] for e in zh_body["errors"]} == {
            "必须在 1 到 100000 之间",
            "必须在 1 到 100 之间",
        }
    if type_name in ("rate-limited", "service-unavailable"):
        assert zh_args["retry_after"] == zh_body["retry_after"]
    if type_name == "internal-error":
        assert zh_args == {"request_id": "req-zh"} and "req-zh" in zh_body["detail"]


def test_a_session_id_never_goes_into_a_problem(client, ctx):
    response = client.delete(URL.format("usr_alice") + "/sess_secret_42", headers=ctx["auth"]("usr_alice"))

    assert response.status_code == 404
    assert "sess_secret_42" not in response.text.replace(response.json()["instance"], "")


@pytest.mark.parametrize(
    "header",
    ["zh", "zh-Hans", "zh-cn", "ZH-CN", "zh-SG;q=0.5, de", "*;q=0.1, en;q=0"],
)
def test_chinese_ranges_get_simplified_chinese(client, ctx, header):
    response = client.get(
        URL.format("usr_bob"), headers={**ctx["auth"]("usr_alice"), "Accept-Language": header}
    )

    assert response.headers["Content-Language"] == "zh-CN"
    assert response.json()["title"] == "拒绝访问"


@pytest.mark.parametrize(
    "header",
    ["zh-TW", "de, fr;q=0.5", "en-GB", "zh;q=0", "!!!", ";q=1", "zh;q=1.0001", "\x7f", "a" * 10_000],
)
def test_other_or_unreadable_values_get_english_and_never_an_error(client, ctx, header):
    response = client.get(
        URL.format("usr_bob"), headers={**ctx["auth"]("usr_alice"), "Accept-Language": header}
    )

    assert response.status_code == 403
    assert response.headers["Content-Language"] == "en"
    assert response.json()["title"] == "Access Denied"


def test_a_successful_response_is_the_same_in_every_language(client, ctx):
    headers = ctx["auth"]("usr_alice")
    response = client.get(URL.format("usr_alice"), headers={**headers, "Accept-Language": "zh-CN"})

    assert response.status_code == 200
    assert "Content-Language" not in response.headers


def test_the_problem_pages_list_the_titles_in_every_language(client):
    index = client.get("/problems/").text
    for name, entry in ENTRIES.items():
        page = client.get(f"/problems/{name}/").text
        for language in shipped_languages():
            title = language.text(entry["title"])
            assert f'lang="{language.tag}">{title}<' in page, (name, language.tag)
            assert title in index


def test_the_problem_pages_list_the_texts_of_each_type_in_every_language(client):
    for name in ENTRIES:
        page = client.get(f"/problems/{name}/").text
        for text in problem_texts()[name]:
            for language in shipped_languages():
                template = re.sub(r"%\((\w+)\)[sd]", r"{\1}", language.template(text))
                assert f'lang="{language.tag}">{html.escape(template)}<' in page, (name, template)
    user_not_found = client.get("/problems/user-not-found/").text
    assert "No user with the ID {user_id} exists" in user_not_found
    assert "必须是整数" in client.get("/problems/invalid-request/").text
