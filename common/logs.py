"""Logging helpers."""

from __future__ import annotations

import logging


class OneLineWarning(logging.Filter):
    """Makes a record a warning of one line: its traceback left out."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def bounded(value: object, limit: int = 64) -> str:
    """A value from a request as a log may show it: printable, escaped, and cut at `limit`
    characters."""
    text = str(value)
    shown = text[:limit].encode("unicode_escape").decode("ascii")
    return shown + ("…" if len(text) > limit else "")
