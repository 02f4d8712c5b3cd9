"""What a log line says beyond its message: the request's or the attempt's context, and the
JSON form (`LOG_FORMAT=json`: one object a line, for a log store)."""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
from collections.abc import Mapping
from contextlib import contextmanager
from types import MappingProxyType

import orjson

# Fields of the context (set by the request middleware and the retry worker) and of a record's
# `extra`, in the order a line shows them.
FIELDS = (
    "request_id",
    "method",
    "path",
    "route",
    "status",
    "duration_ms",
    "user",
    "channel",
    "worker",
    "idempotency_key",
)

_context: contextvars.ContextVar[Mapping] = contextvars.ContextVar(
    "fi_log_context", default=MappingProxyType({})
)


@contextmanager
def log_context(**values):
    """Every line logged inside the block (in this thread or task) carries `values`."""
    token = _context.set({**_context.get(), **values})
    try:
        yield
    finally:
        _context.reset(token)


def context_value(name: str):
    return _context.get().get(name)


class JsonFormatter(logging.Formatter):
    """time (UTC, RFC 3339), level, logger, message, then the context and the record's extras
    among FIELDS, and the exception's traceback if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = _context.get()
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is None:
                value = context.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """The readable line, with the route, user and channel of a request, and the request id or
    the attempt's key, when there are."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = _context.get()
        shown = []
        for name in ("route", "user", "channel", "request_id", "idempotency_key"):
            value = getattr(record, name, None) or context.get(name)
            if value:
                shown.append(f"{name}={value}")
        return f"{text} [{' '.join(shown)}]" if shown else text
