"""Checks a response against what openapi.yaml documents for it: status, media type, headers, body."""

from __future__ import annotations

import functools
from typing import Any

import httpx
import jsonschema
import schemathesis
from schemathesis.config import SchemathesisConfig
from starlette.routing import compile_path

from autional_sessions.spec import load_spec, spec_path

LIST_PATH = "/sessions/user/{user_id}/sessions"


@functools.cache
def _schema():
    # An explicit default config: the repository's schemathesis.toml is for runs against a deployment.
    return schemathesis.openapi.from_path(str(spec_path()), config=SchemathesisConfig())


def _template(method: str, path: str) -> str:
    """The spec's path template that `path` is an instance of, for an operation with `method`."""
    for template, operations in load_spec()["paths"].items():
        regex, _, _ = compile_path(template)
        if method.lower() in operations and regex.match(path):
            return template
    raise AssertionError(f"no operation of the spec is {method} {path}")


def _resolve(node: Any, spec: dict) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = spec
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return _resolve(target, spec)
        return {k: _resolve(v, spec) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, spec) for v in node]
    return node


def documented_response(status: int, method: str = "GET", template: str = LIST_PATH) -> dict:
    spec = load_spec()
    responses = spec["paths"][template][method.lower()]["responses"]
    assert str(status) in responses, f"status {status} is not documented for {method} {template}"
    return _resolve(responses[str(status)], spec)


def assert_conforms(response: httpx.Response) -> dict:
    """Assert the response is exactly what the spec documents for its status; return its JSON body."""
    method = response.request.method
    template = _template(method, response.request.url.path)
    documented = documented_response(response.status_code, method, template)
    for name, header in documented.get("headers", {}).items():
        value = response.headers.get(name)
        if header.get("required"):
            assert value is not None, f"required header {name} missing from a {response.status_code}"
        if value is not None:
            schema = header["schema"]
            typed: Any = int(value) if schema.get("type") == "integer" else value
            jsonschema.validate(typed, schema)
    media_type = response.headers.get("content-type", "").split(";")[0].strip()
    if "content" not in documented:  # a response without a body (204)
        assert not response.content, f"a {response.status_code} documented without content has a body"
        return {}
    assert media_type in documented["content"], f"{media_type!r} not documented for {response.status_code}"
    _schema()[template][method].validate_response(response)
    body = response.json()
    if media_type == "application/problem+json":
        assert body["status"] == response.status_code
    return body
