"""Every operationId of the spec names the API and resolves to an async handler."""

from __future__ import annotations

import inspect

import pytest

from autional_sessions.http.handler_resolver import find_handler, handler_name
from autional_sessions.spec import HTTP_METHODS, load_spec


def operation_ids() -> list[str]:
    return [
        operation["operationId"]
        for item in load_spec()["paths"].values()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


@pytest.mark.parametrize("operation_id", operation_ids())
def test_each_operation_id_is_camel_case_and_has_an_async_handler(operation_id):
    assert operation_id.isidentifier() and operation_id[0].islower() and "_" not in operation_id
    assert inspect.iscoroutinefunction(find_handler(operation_id))


def test_names_map_camel_case_to_snake_case():
    assert handler_name("listUserSessions") == "list_user_sessions"
    assert handler_name("checkHealth") == "check_health"


def test_an_operation_id_without_a_handler_is_an_error():
    with pytest.raises(LookupError, match="no handler"):
        find_handler("deleteEverything")
