"""Django's PostgreSQL backend, whose connections wait for an answer of the database at most
DB_ANSWER_TIMEOUT seconds where that deadline is set: in the web server's processes (all of a
request, its signals and its response's close included: `config/wsgi.py` sets it for the
process) and in the retry worker's loop (`answers_within`).

A database that stops answering, without closing its connections (a frozen server, a proxy or
a firewall that stops forwarding and still acknowledges), would otherwise hold every request
and every worker that sent it a statement until the operating system gives up on the
connection, which may be never: TCP's own timeouts only end a connection whose data is not
acknowledged. Past the deadline the connection is closed and the statement fails as a lost
database does (an OperationalError: the API answers 503 `database_unavailable` with
`Retry-After`, the worker tries again); the next use of the database connects afresh, within
`DB_CONNECT_TIMEOUT`. Without a deadline set (migrations, housekeeping, a shell) statements
take as long as they take.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import psycopg
from django.db.backends.postgresql import base
from psycopg import errors

_PROCESS = object()  # the context says nothing: the process's deadline holds
_answer_timeout: contextvars.ContextVar[float | object | None] = contextvars.ContextVar(
    "answer_timeout", default=_PROCESS
)
_process_answer_timeout: float | None = None


def answer_timeout() -> float | None:
    """Seconds to wait for each answer of the database here (None: as long as it takes)."""
    value = _answer_timeout.get()
    return _process_answer_timeout if value is _PROCESS else value


def answer_within_by_default(seconds: float | None) -> None:
    """The deadline of every statement of this process that `answers_within` does not set."""
    global _process_answer_timeout
    _process_answer_timeout = seconds


@contextlib.contextmanager
def answers_within(seconds: float | None) -> Iterator[None]:
    """Statements run in the block wait at most `seconds` for each answer of the database
    (None: as long as they take)."""
    token = _answer_timeout.set(seconds)
    try:
        yield
    finally:
        _answer_timeout.reset(token)


class AnswerTimeout(psycopg.OperationalError):
    """The database did not answer within the deadline: the connection was closed."""


# The database did not answer in time, to connect or to a statement: asking again at once
# would only wait as long again.
TIMEOUTS = (AnswerTimeout, errors.ConnectionTimeout)


def timed_out(exc: BaseException) -> bool:
    """Whether `exc` (psycopg's, or Django's wrapping psycopg's) says the database did not
    answer in time."""
    return isinstance(exc, TIMEOUTS) or isinstance(exc.__cause__, TIMEOUTS)


class AnswerDeadlineConnection(psycopg.Connection):
    """A psycopg connection that waits for each answer at most `answer_timeout` seconds."""

    def wait(self, gen, interval: float = 0.1, timeout: float | None = None):
        limit = answer_timeout()
        if limit is None or timeout is not None:
            return super().wait(gen, interval, timeout)
        try:
            return super().wait(gen, interval, limit)
        except errors._WaitTimeout:  # psycopg's own signal of a wait past its timeout
            # Half a conversation: the connection cannot be used again.
            self.close()
            raise AnswerTimeout(
                f"the database did not answer within {limit:g} s (DB_ANSWER_TIMEOUT); "
                "the connection is closed"
            ) from None


class _Driver:
    """The psycopg module as Django's backend uses it, its connections AnswerDeadlineConnection."""

    connect = staticmethod(AnswerDeadlineConnection.connect)

    def __getattr__(self, name: str):
        return getattr(psycopg, name)


class DatabaseWrapper(base.DatabaseWrapper):
    Database = _Driver()
