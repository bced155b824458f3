"""openapi.yaml is a valid OpenAPI document and holds what the API reference gives."""

from __future__ import annotations

from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

from autional_sessions.spec import load_spec, spec_path

OPERATION = ("/sessions/user/{user_id}/sessions", "get")

# Every field the API reference lists, by schema.
REFERENCE_FIELDS = {
    "dto.FieldViolation": {"code", "description", "field", "value"},
    "dto.Problem": {
        "code",
        "detail",
        "errors",
        "i18n_args",
        "i18n_key",
        "instance",
        "request_id",
        "retry_after",
        "service",
        "span_id",
        "status",
        "timestamp",
        "title",
        "trace_id",
        "type",
    },
    "dto.SessionListResponse": {"code", "items", "message", "pagination", "timestamp", "total"},
    "dto.SessionResponse": {
        "amr",
        "authenticated_at",
        "created_at",
        "device_id",
        "device_type",
        "expires_at",
        "geoip",
        "id",
        "idle_expires_at",
        "ip",
        "last_active_at",
        "status",
        "tenant_id",
        "user_agent",
        "user_id",
    },
    "dto.PageInfo": {"has_next", "has_prev", "page", "page_size", "total", "total_pages"},
}

SESSION_EXAMPLES = {
    "amr": "password,totp",
    "authenticated_at": "2026-04-15T08:00:00Z",
    "device_id": "dev_abc123",
    "device_type": "desktop",
    "geoip": "Beijing, CN",
    "id": "sess_abc123",
    "ip": "192.168.1.1",
    "status": "active",
    "tenant_id": "tnt_xyz789",
    "user_agent": "Mozilla/5.0...",
    "user_id": "usr_abc123",
}


def test_the_spec_is_a_valid_openapi_document():
    spec_dict, base_uri = read_from_filename(str(spec_path()))
    validate(spec_dict, base_uri=base_uri)


def test_the_operation_matches_the_reference():
    operation = load_spec()["paths"][OPERATION[0]][OPERATION[1]]

    assert operation["tags"] == ["Session Management"]
    assert "RFC 7519" in operation["description"] and "NIST SP 800-63B" in operation["description"]
    assert operation["security"] == [{"bearerAuth": []}]
    components = load_spec()["components"]["parameters"]
    params = {
        p["name"]: p
        for p in (
            components[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p for p in operation["parameters"]
        )
    }
    assert params["user_id"]["in"] == "path" and params["user_id"]["required"] is True
    assert params["page"]["schema"]["default"] == 1
    assert params["page_size"]["schema"]["default"] == 20
    assert {"200", "400", "401", "403", "404", "500"} <= operation["responses"].keys()
    for status in ("400", "401", "403", "404", "500", "503"):
        assert list(operation["responses"][status]["content"]) == ["application/problem+json"]


def test_the_bearer_scheme_is_http_jwt():
    scheme = load_spec()["components"]["securitySchemes"]["bearerAuth"]

    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")


def test_every_reference_field_is_there_with_a_description():
    schemas = load_spec()["components"]["schemas"]
    for name, fields in REFERENCE_FIELDS.items():
        properties = schemas[name]["properties"]
        assert fields <= set(properties), name
        for field in set(properties) - fields:
            # A field the reference does not have is ours, and says so.
            assert "Extension of the reference" in properties[field]["description"], f"{name}.{field}"
        for field, definition in properties.items():
            if not (name == "dto.SessionListResponse" and field in {"code", "message", "timestamp"}):
                assert definition.get("description"), f"{name}.{field} has no description"


def test_session_examples_are_the_references():
    properties = load_spec()["components"]["schemas"]["dto.SessionResponse"]["properties"]

    for field, example in SESSION_EXAMPLES.items():
        assert properties[field]["example"] == example


def test_every_timestamp_is_a_date_time():
    schemas = load_spec()["components"]["schemas"]
    stamps = [
        ("dto.SessionResponse", f) for f in REFERENCE_FIELDS["dto.SessionResponse"] if f.endswith("_at")
    ]
    stamps += [("dto.SessionListResponse", "timestamp"), ("dto.Problem", "timestamp")]
    for schema, field in stamps:
        assert schemas[schema]["properties"][field]["format"] == "date-time", f"{schema}.{field}"


def test_problem_types_have_unique_codes_that_start_with_their_status():
    types = load_spec()["components"]["schemas"]["dto.Problem"]["x-problem-types"]

    codes = [entry["code"] for entry in types.values()]
    assert len(codes) == len(set(codes))
    for entry in types.values():
        assert str(entry["code"]).startswith(str(entry["status"]))


def test_the_contract_is_read_from_the_package_only(tmp_path):
    # Not from the directory above the package (site-packages, for an installed copy), where any stray
    # openapi.yaml could replace the contract. An installed copy is simulated: the package's top module
    # and spec.py in a directory with a stray openapi.yaml beside the package.
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import autional_sessions

    site = tmp_path / "site-packages"
    package = site / "autional_sessions"
    package.mkdir(parents=True)
    for name in ("__init__.py", "spec.py"):
        shutil.copy(Path(autional_sessions.__file__).parent / name, package / name)
    (site / "openapi.yaml").write_text("stray: true\n")
    show = "from autional_sessions.spec import spec_path; print(spec_path())"

    def spec_path_there() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {show}"],
            capture_output=True,
            text=True,
            check=False,
        )

    assert "is not packaged with autional_sessions" in spec_path_there().stderr
    (package / "openapi.yaml").write_text("openapi: 3.0.3\n")
    assert Path(spec_path_there().stdout.strip()) == package / "openapi.yaml"


def test_a_checkout_reads_the_contract_at_the_top_of_the_repository():
    import autional_sessions
    from autional_sessions.spec import spec_path

    assert autional_sessions.CHECKOUT is not None
    assert spec_path() == autional_sessions.CHECKOUT / "openapi.yaml"
