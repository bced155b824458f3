"""The directory in which the worker processes of `serve` share their metrics.

Each worker process counts on its own. In prometheus-client's multiprocess mode each one writes its values
to memory-mapped files in one directory, and /metrics, whichever worker answers it, adds them all up.
prometheus-client chooses the mode once, when it is imported, from PROMETHEUS_MULTIPROC_DIR; so the
directory is set up and exported here, in a module that does not import prometheus-client, before
anything does.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir(path: str | None = None) -> str:
    """Set up the directory (`path`, made if missing and emptied of an earlier run's values; or a fresh
    temporary one, removed when this process exits, SIGTERM included), export it in
    PROMETHEUS_MULTIPROC_DIR for this process and the workers it starts, and return it. Call it, from the
    main thread, before starting the server."""
    _refuse_if_imported_too_early()
    if path is None:
        path = tempfile.mkdtemp(prefix="autional-sessions-metrics-")
        _remove_at_exit(path)
    else:
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        # An earlier run's counts would be added to this run's. Only prometheus-client's own files go, so
        # that a mistyped path costs nothing else.
        for stale in directory.glob("*.db"):
            stale.unlink()
    os.environ[ENV_VAR] = path
    return path


def _remove_at_exit(path: str) -> None:
    atexit.register(shutil.rmtree, path, ignore_errors=True)

    # uvicorn shuts down on SIGTERM, then raises the signal again under the handler that was there before
    # it started, so that the process ends as killed by SIGTERM: with the default handler, atexit never
    # runs. This handler is that earlier one: it removes the directory, then ends the process the same way.
    def remove_then_end(signum: int, _frame: object) -> None:
        shutil.rmtree(path, ignore_errors=True)
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, remove_then_end)


def _refuse_if_imported_too_early() -> None:
    # With one worker, uvicorn runs the app in this very process: had prometheus-client been imported
    # already, it would count in memory, where /metrics (reading the directory) never looks.
    values = sys.modules.get("prometheus_client.values")
    if values is not None and values.ValueClass is values.MutexValue:
        raise RuntimeError(
            f"prometheus_client was imported before {ENV_VAR} was set, so this process would not share "
            "its metrics; call prepare_multiprocess_dir before anything imports autional_sessions.observability.metrics"
        )
