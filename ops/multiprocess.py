"""prometheus_client's multiprocess mode for `manage.py serve` (gunicorn's workers and the
retry worker it starts). The mode is chosen when prometheus_client is first imported, so
`prepare` runs before Django is set up (manage.py) and imports nothing of it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def prepare() -> None:
    """Points every process of this server at one metrics directory: the one the environment
    names (which must exist; a deployment makes it empty at boot, and its API and workers
    share it), or a new empty one of its own."""
    given = os.environ.get(VARIABLE, "").strip()
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        return
    os.environ[VARIABLE] = tempfile.mkdtemp(prefix="fi-metrics-")


def child_exit(server, worker) -> None:
    """gunicorn's hook: a worker that exited leaves the live gauges."""
    if os.environ.get(VARIABLE):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
