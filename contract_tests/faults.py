"""Faults the in-process contract suite injects under the app, so that its 500 and 503 are reached."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping

from autional_sessions.db.errors import DatabaseUnavailable
from autional_sessions.db.statements import Statement
from autional_sessions.db.store import Store


def unexpected_error(user_id: str) -> Exception:
    return RuntimeError(f"injected fault for {user_id}")


def unavailable_error(user_id: str) -> Exception:
    return DatabaseUnavailable(f"injected outage for {user_id}")


class FaultInjectingStore:
    """A store that fails every statement with one of these user ids among its parameters.

    The fault is raised where the store would raise it, under the app, so the response it causes goes
    through the same error handling as a real bug or outage would.
    """

    def __init__(self, store: Store, faults: Mapping[str, Callable[[str], Exception]]) -> None:
        self._store = store
        self._faults = faults
        self.dialect = store.dialect

    def _inject(self, params: tuple) -> None:
        for user_id, fault in self._faults.items():
            if user_id in params:
                raise fault(user_id)

    async def fetch(self, statement: Statement, params: tuple) -> list[tuple]:
        self._inject(params)
        return await self._store.fetch(statement, params)

    async def write(self, statement: Statement, params: tuple) -> list[tuple]:
        self._inject(params)
        return await self._store.write(statement, params)

    def snapshot(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self._store.snapshot()

    async def close(self) -> None:
        await self._store.close()
