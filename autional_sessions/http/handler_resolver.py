"""From an operationId of the spec to its handler.

The spec names operations for the people and tools that read it (`listUserSessions`: the docs,
Schemathesis's output, the function name of a generated SDK); the handlers are Python functions of the
`handlers` package named the Python way (`handlers.sessions.list_user_sessions`). This resolver, given
to Connexion, joins the two; an operationId with no handler stops the app at start-up.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

from connexion.resolver import Resolver

# The handler modules, in the order they are searched.
HANDLER_MODULES = ("autional_sessions.handlers.sessions", "autional_sessions.handlers.operations")


def handler_name(operation_id: str) -> str:
    """`listUserSessions` -> `list_user_sessions`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation_id).lower()


def find_handler(operation_id: str) -> Callable[..., Any]:
    name = handler_name(operation_id)
    for module_name in HANDLER_MODULES:
        function = getattr(importlib.import_module(module_name), name, None)
        if callable(function):
            return function
    raise LookupError(f"no handler {name} for operationId {operation_id} in {', '.join(HANDLER_MODULES)}")


def resolver() -> Resolver:
    return Resolver(function_resolver=find_handler)
