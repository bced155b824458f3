"""SQL statements compiled once, at start-up, from peewee queries; bound per request.

peewee builds SQL text from the models, which keeps the schema in one place, but building it is about a
quarter of a request when done per request. Here a query is built once with named slots in place of the
request's values; a request only fills a tuple in slot order and hands the text to the driver, which
prepares it once per connection.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import peewee

_SLOT_MARK = "\x00slot:"


def slot(name: str) -> str:
    """A stand-in for a request value named `name`, in a query about to be compiled."""
    return f"{_SLOT_MARK}{name}\x00"


@dataclass(frozen=True)
class Statement:
    sql: str
    # Per bound parameter, in order: (True, slot name) for a request value, (False, value) for a constant.
    _params: tuple[tuple[bool, Any], ...]

    def bind(self, values: Mapping[str, Any]) -> tuple:
        """The statement's parameters, in order, for a request's `values` (one per slot)."""
        return tuple(values[value] if is_slot else value for is_slot, value in self._params)


def compile_query(query: peewee.Query, database: peewee.Database) -> Statement:
    """Compile `query` for `database`'s dialect, with `$1, $2, ...` placeholders on PostgreSQL
    (asyncpg's style) and `?` on SQLite."""
    sql, params = query.bind(database).sql()
    compiled = []
    for value in params:
        if isinstance(value, str) and value.startswith(_SLOT_MARK):
            compiled.append((True, value[len(_SLOT_MARK) : -1]))
        else:
            compiled.append((False, value))
    if isinstance(database, peewee.PostgresqlDatabase):
        sql = _numbered_placeholders(sql, len(params))
    return Statement(sql, tuple(compiled))


def _numbered_placeholders(sql: str, count: int) -> str:
    numbers = iter(range(1, count + 1))
    numbered = re.sub(r"%s", lambda _: f"${next(numbers)}", sql)
    if next(numbers, None) is not None or "%" in numbered:
        raise ValueError(f"cannot renumber the placeholders of {sql!r}")
    return numbered
