"""Which database the service runs on: PostgreSQL (production) or SQLite (the embedded default).

The one test of it. Features that only PostgreSQL has (the read fast path, the counts kept by
triggers, set-based writes) ask here.
"""

from __future__ import annotations

from django.db import connection, connections
from django.db.models import Q
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
