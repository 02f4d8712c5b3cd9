"""Which database the service runs on: PostgreSQL (production) or SQLite (the embedded default).

The one test of it. Features that only PostgreSQL has (the read fast path, the counts kept by
triggers, set-based writes) ask here.
"""

from __future__ import annotations

import itertools
import re
from functools import lru_cache
from typing import Any

import psycopg
from django.db import connection, connections
from django.db.models import Expression, Q
from django.db.models.sql import Query
from psycopg.sql import Literal


def is_postgresql(alias: str = "default") -> bool:
    # The backend's class attribute: asking opens no connection.
    return connections[alias].vendor == "postgresql"


def compile_sql(model, node, alias: str, joined: dict[str, str] | None = None) -> tuple[str, list]:
    """The SQL Django writes for `node` (a `Q` or an expression) on `model`'s table aliased
    `alias`, and its parameters: the ORM's form of a rule, for a statement written around it.
    EmptyResultSet and FullResultSet (a condition that no row or every row meets) are raised
    as Django raises them. `joined`: the aliases of the tables a join of `node` reads, by table
    name."""
    query = Query(model)
    if isinstance(node, Q):
        query.add_q(node)  # joins what it reads (build_where allows none)
        resolved = query.where
    else:
        resolved = node.resolve_expression(query)
    resolved = resolved.relabeled_clone({model._meta.db_table: alias, **(joined or {})})
    return query.get_compiler(connection=connection).compile(resolved)


def inline_sql(sql: str, params) -> str:
    """`sql` with its parameters written in as literals, for a fragment of constants that goes
    into other statements as text (never a value from a request)."""
    return sql % tuple(Literal(value).as_string(None) for value in params)


class Slot(Expression):
    """A parameter of a statement compiled once and run many times: it compiles to a
    placeholder, whose value each run gives by name (`bind`)."""

    def __init__(self, name: str, output_field):
        super().__init__(output_field=output_field)
        self.name = name

    def __repr__(self) -> str:
        return f"Slot({self.name!r})"

    def as_sql(self, compiler, connection):
        return "%s", [self]


def bind(params: list, values: dict[str, Any]) -> list:
    """The parameters of a compiled statement for one run: each Slot's value from `values`."""
    return [values[param.name] if isinstance(param, Slot) else param for param in params]


def prepared_cursor() -> psycopg.RawCursor:
    """A psycopg cursor on Django's connection (PostgreSQL) that binds server-side, so that
    statements run with `prepare=True` are prepared once per connection and planned only once
    (Django's own cursors bind client-side). It takes part in Django's transactions. Its
    statements are written with PostgreSQL's own placeholders (`numbered`)."""
    connection.ensure_connection()
    return psycopg.RawCursor(connection.connection)


_PLACEHOLDER = re.compile(r"%%|%s")


@lru_cache(maxsize=1024)
def numbered(sql: str) -> bytes:
    """`sql`, written with Django's placeholders (`%s`, and `%%` for a percent sign), with
    PostgreSQL's ($1, $2, ...), encoded. Done once per statement: psycopg would otherwise
    encode each statement on every run, and parse again each longer than 4,096 characters
    (0.1 ms of a request's time)."""
    counter = itertools.count(1)
    return _PLACEHOLDER.sub(lambda m: "%" if m[0] == "%%" else f"${next(counter)}", sql).encode()


def fetchone_prepared(sql: str, params: list):
    """One row of a prepared statement (PostgreSQL)."""
    with prepared_cursor() as cursor:
        cursor.execute(numbered(sql), params, prepare=True)
        return cursor.fetchone()


def fetchall_prepared(sql: str, params: list) -> list[tuple]:
    """The rows of a prepared statement (PostgreSQL); its errors are Django's."""
    with connection.wrap_database_errors, prepared_cursor() as cursor:
        cursor.execute(numbered(sql), params, prepare=True)
        return cursor.fetchall()


def fetchone(sql: str, params: list):
    """One row of a statement on either database (prepared on PostgreSQL); its errors are
    Django's."""
    if is_postgresql():
        with connection.wrap_database_errors:
            return fetchone_prepared(sql, params)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()
