"""A Babel extractor for the texts of the contract: the titles of `x-problem-types` in openapi.yaml.

The titles are the problem types' English texts, and the server translates them like the details in the
code, so `pybabel extract` must find them too: babel.cfg names this function in its `[extractors]`
section, for openapi.yaml.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from typing import IO, Any

import yaml

from autional_sessions.spec import PROBLEM_TYPES_PATH


def extract_problem_titles(
    fileobj: IO[bytes],
    keywords: Mapping[str, Any],
    comment_tags: Collection[str],
    options: Mapping[str, Any],
) -> Iterator[tuple[int, None, str, list[str]]]:
    """Babel's extractor interface: (line, function, message, translator comments) for each title."""
    node = yaml.compose(fileobj.read().decode(options.get("encoding", "utf-8")))
    for key in PROBLEM_TYPES_PATH:
        node = _value(node, key)
    for name_node, entry in node.value:
        title = _value(entry, "title")
        status = _value(entry, "status").value
        yield (
            title.start_mark.line + 1,
            None,
            title.value,
            [f"The title of the problem type {name_node.value} (HTTP {status})."],
        )


def _value(mapping: yaml.Node, key: str) -> yaml.Node:
    return next(value for name, value in mapping.value if name.value == key)
