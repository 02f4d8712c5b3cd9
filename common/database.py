"""Which database the service runs on: PostgreSQL (production) or SQLite (the embedded default).

The one test of it. Features that only PostgreSQL has (the read fast path, the counts kept by
triggers, set-based writes) ask here.
"""

from __future__ import annotations

from django.db import connections


def is_postgresql(alias: str = "default") -> bool:
    # The backend's class attribute: asking opens no connection.
    return connections[alias].vendor == "postgresql"
