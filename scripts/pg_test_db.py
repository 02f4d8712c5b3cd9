"""Helpers of scripts/test for the PostgreSQL pass.

check URL          exit 0 when PostgreSQL answers at URL
url URL NAME       the URL of database NAME on the same server
drop URL NAME      drop every database test_NAME* left behind (pytest-django drops its own
                   test databases on success; this covers an interrupted run)
"""

from __future__ import annotations

import sys
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql


def check(admin_url: str) -> int:
    try:
        with psycopg.connect(admin_url, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        print(f"PostgreSQL unreachable: {exc}".strip(), file=sys.stderr)
        return 1
    return 0


def url(admin_url: str, name: str) -> int:
    parts = urlsplit(admin_url)
    print(urlunsplit(parts._replace(path=f"/{name}")))
    return 0


def drop(admin_url: str, name: str) -> int:
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as connection:
        rows = connection.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s",
            (f"test\\_{name}%",),
        ).fetchall()
        for (database,) in rows:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )
    return 0


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    sys.exit({"check": check, "url": url, "drop": drop}[command](*arguments))
