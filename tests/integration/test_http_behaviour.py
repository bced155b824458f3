"""What every response carries, and the problems for requests that match no operation."""

from __future__ import annotations

import json

import pytest
import yaml

from autional_sessions.spec import spec_path
from tests.factories import add_user
from tests.spec_check import assert_conforms

URL = "/sessions/user/usr_alice/sessions"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def alice(database):
    return add_user("usr_alice")


@pytest.mark.parametrize("case", ["200", "400", "401", "403", "404", "route-404", "405"])
def test_every_response_has_a_request_id_no_store_and_nosniff(client, auth_headers, alice, case):
    request = {
        "200": ("GET", URL, auth_headers("usr_alice")),
        "400": ("GET", URL + "?page=0", auth_headers("usr_alice")),
        "401": ("GET", URL, {}),
        "403": ("GET", "/sessions/user/usr_bob/sessions", auth_headers("usr_alice")),
        "404": ("GET", "/sessions/user/usr_nobody/sessions", auth_headers("usr_nobody")),
        "route-404": ("GET", "/no/such/route", {}),
        "405": ("DELETE", URL, auth_headers("usr_alice")),
    }[case]
    method, url, headers = request

    response = client.request(method, url, headers=headers)

    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-request-id"].startswith("req_")
    if response.status_code >= 400:
        body = response.json()
        assert body["request_id"] == response.headers["x-request-id"]
        assert response.headers["content-type"] == "application/problem+json"


def test_a_sane_caller_request_id_is_echoed(client, auth_headers, alice):
    response = client.get(URL, headers={**auth_headers("usr_alice"), "X-Request-ID": "client-42.a:b_c"})

    assert response.headers["x-request-id"] == "client-42.a:b_c"


@pytest.mark.parametrize("supplied", ["x" * 129, "has space", 'quote"s', "naïve"])
def test_an_unsafe_caller_request_id_is_replaced(client, alice, supplied):
    response = client.get(URL, headers={"X-Request-ID": supplied.encode("utf-8")})

    assert response.headers["x-request-id"].startswith("req_")
    assert response.json()["request_id"] == response.headers["x-request-id"]


def test_problems_carry_the_trace_context_of_the_servers_span_in_the_callers_trace(client, alice):
    response = client.get(URL, headers={"traceparent": TRACEPARENT})
    body = response.json()

    assert body["trace_id"] == response.headers["traceparent"]
    version, trace_id, span_id, flags = body["trace_id"].split("-")
    assert (version, trace_id, flags) == ("00", TRACEPARENT[3:35], "01")
    assert body["span_id"] == span_id != TRACEPARENT[36:52]


def test_an_invalid_traceparent_starts_a_new_trace(client, alice):
    response = client.get(URL, headers={"traceparent": "00-" + "0" * 32 + "-b7ad6b7169203331-01"})
    body = response.json()

    assert body["trace_id"] == response.headers["traceparent"]
    assert body["trace_id"][3:35] not in (TRACEPARENT[3:35], "0" * 32)
    assert body["trace_id"].endswith("-00")  # nothing here samples it


def test_an_unknown_route_is_a_404_problem(client):
    response = client.get("/sessions/user")

    assert response.status_code == 404
    body = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert body["code"] == 40400002
    assert body["instance"] == "/sessions/user"
    assert body["detail"] == "No operation of this API has the path /sessions/user"
    assert body["status"] == 404


def test_a_wrong_method_is_a_405_problem_with_allow(client, auth_headers, alice):
    response = client.post(URL, headers=auth_headers("usr_alice"))

    assert response.status_code == 405
    assert "GET" in response.headers["allow"]
    body = response.json()
    assert body["code"] == 40500001
    assert body["detail"] == "This path does not take POST; see the Allow header"
    assert response.headers["content-type"] == "application/problem+json"


def test_problem_instance_is_the_path_without_the_query(client, auth_headers, alice):
    body = assert_conforms(client.get(URL + "?page=0&page_size=5", headers=auth_headers("usr_alice")))

    assert body["instance"] == URL


def test_the_spec_is_served_as_json(client):
    response = client.get("/openapi.json")

    assert response.status_code == 200
    served = response.json()
    with spec_path().open() as f:
        written = yaml.safe_load(f)
    assert served["paths"].keys() == written["paths"].keys()
    assert served["info"] == json.loads(json.dumps(written["info"]))
    assert served["components"]["schemas"].keys() == written["components"]["schemas"].keys()
    problem = "dto.Problem"
    assert (
        served["components"]["schemas"][problem]["x-problem-types"]
        == written["components"]["schemas"][problem]["x-problem-types"]
    )


def test_swagger_ui_is_served_with_its_assets_locally(client):
    page = client.get("/ui/")

    assert page.status_code == 200
    assert "swagger-ui" in page.text
    assert "https://" not in page.text.split("<body>")[0], "the UI must not load assets from the internet"
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert asset in page.text
        assert client.get(f"/ui/{asset}").status_code == 200


@pytest.mark.parametrize("scheme", ["Basic", "Token", "bearer-ish", "JWT"])
def test_a_valid_jwt_under_another_scheme_is_the_missing_credentials_problem(
    client, auth_headers, alice, scheme
):
    token = auth_headers("usr_alice")["Authorization"].removeprefix("Bearer ")

    response = client.get(URL, headers={"Authorization": f"{scheme} {token}"})

    assert response.status_code == 401
    body = assert_conforms(response)
    assert body["code"] == 40100001
    assert body["type"].endswith("/missing-credentials")
