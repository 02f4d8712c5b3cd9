"""The raw floor: the same endpoints as a bare WSGI function over psycopg 3, no framework.

Each request is ONE SQL statement, the token check included (the key's SHA-256 looked up in
the service's `accounts_token`, not revoked, not expired, its user active), on one autocommit
connection per worker process. Date-times are rendered by PostgreSQL as the service renders
them (UTC, microseconds, `Z`); the JSON is written by orjson. It validates nothing beyond what
the SQL needs: it is the floor a framework's cost is measured against, not a service.

    GET   /api/v1/channel/{channel_id}/failed_integrations/?page=&limit=&reason_type=&is_active=
    POST  /api/v1/channel/{channel_id}/failed_integrations/          one record
    POST  /api/v1/channel/{channel_id}/failed_integrations/bulk/     a JSON array of records
    GET   /api/v1/channel/{channel_id}/failed_integrations/{id}/
    PATCH /api/v1/channel/{channel_id}/failed_integrations/{id}/

Run it with DATABASE_URL set: gunicorn bench.floor:application

FLOOR_INSERT_DEFAULTS (JSON {column: value}, bench/run passes the service's model defaults)
gives the values of the table's other columns on insert: Django keeps defaults in Python, so a
required column the service gained since this file was written has none in the database.
"""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qsl, urlencode

import orjson
import psycopg
from psycopg import sql

PAGE_SIZE_DEFAULT = 10
PAGE_SIZE_MAX = 1000

ROUTE = re.compile(r"^/api/v1/channel/(\d{1,18})/failed_integrations/(?:(\d{1,18})/|(bulk)/)?$")

FIELDS = (
    "pk",
    "channel",
    "version_date",
    "reason_type",
    "is_active",
    "content_type",
    "object_id",
    "expiration_date",
    "retry_count",
    "max_retry_count",
    "retry_interval",
    "integration_action",
    "log_id",
    "created_date",
    "modified_date",
)


def _utc(column: str) -> str:
    return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"


# The record as the service answers it, from a row aliased `f`.
RECORD = sql.SQL(
    ", ".join(
        (
            "f.id",
            "f.channel_id",
            _utc("f.version_date"),
            "f.reason_type",
            "f.is_active",
            "f.content_type_id",
            "f.object_id",
            _utc("f.expiration_date"),
            "f.retry_count",
            "f.max_retry_count",
            "f.retry_interval",
            "f.integration_action_id",
            "f.log_id",
            _utc("f.created_date"),
            _utc("f.modified_date"),
        )
    )
)

AUTH = sql.SQL(
    """auth AS (
  SELECT 1 FROM accounts_token t JOIN auth_user u ON u.id = t.user_id
  WHERE t.key_hash = encode(sha256(convert_to(%(key)s, 'UTF8')), 'hex')
    AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now()) AND u.is_active
)"""
)

RETRIEVE = sql.SQL(
    """WITH {auth}
SELECT EXISTS (SELECT 1 FROM auth), {record}
FROM (SELECT 1) AS one
LEFT JOIN integrations_failedintegration f
  ON f.id = %(pk)s AND f.channel_id = %(channel)s AND EXISTS (SELECT 1 FROM auth)"""
).format(auth=AUTH, record=RECORD)

# One statement for a page: the header (auth, channel, exact count) on every row, the page's
# records beside it (a single row of NULLs when the page is empty).
LIST = """WITH {auth},
ch AS (SELECT c.id FROM integrations_channel c
       WHERE c.id = %(channel)s AND EXISTS (SELECT 1 FROM auth)),
matching AS NOT MATERIALIZED (
  SELECT * FROM integrations_failedintegration
  WHERE channel_id = %(channel)s AND EXISTS (SELECT 1 FROM ch) {filters}
)
SELECT h.authed, h.found, h.total, {record}
FROM (SELECT EXISTS (SELECT 1 FROM auth) AS authed, EXISTS (SELECT 1 FROM ch) AS found,
             (SELECT count(*) FROM matching) AS total) AS h
LEFT JOIN LATERAL (SELECT * FROM matching ORDER BY id LIMIT %(limit)s OFFSET %(offset)s) AS f
  ON true"""

FILTERS = {
    "reason_type": "AND reason_type = %(reason_type)s",
    "is_active": "AND is_active = %(is_active)s",
}

OWN_COLUMNS = (
    "channel_id",
    "version_date",
    "reason_type",
    "is_active",
    "content_type_id",
    "object_id",
    "expiration_date",
    "retry_count",
    "max_retry_count",
    "retry_interval",
    "integration_action_id",
    "log_id",
    "created_date",
    "modified_date",
)
OTHER_COLUMNS = {
    column: value
    for column, value in orjson.loads(os.environ.get("FLOOR_INSERT_DEFAULTS") or "{}").items()
    if column not in OWN_COLUMNS
}
INSERT_COLUMNS = sql.SQL(", ").join(map(sql.Identifier, [*OWN_COLUMNS, *OTHER_COLUMNS]))
# Written after the own columns' values in the SELECT lists below.
OTHER_VALUES = sql.SQL("").join(
    sql.SQL(", {}").format(sql.Literal(v)) for v in OTHER_COLUMNS.values()
)

CREATE = sql.SQL(
    """WITH {auth},
f AS (
  INSERT INTO integrations_failedintegration ({columns})
  SELECT c.id, %(version_date)s::timestamptz, %(reason_type)s::varchar,
         coalesce(%(is_active)s::boolean, true), %(content_type)s::integer,
         %(object_id)s::bigint, %(expiration_date)s::timestamptz,
         coalesce(%(retry_count)s::integer, 1), coalesce(%(max_retry_count)s::integer, 1),
         coalesce(%(retry_interval)s::integer, 0), %(integration_action)s::bigint,
         %(log_id)s::bigint, now(), now(){other}
  FROM integrations_channel c WHERE c.id = %(channel)s AND EXISTS (SELECT 1 FROM auth)
  RETURNING *
)
SELECT EXISTS (SELECT 1 FROM auth), {record} FROM (SELECT 1) AS one LEFT JOIN f ON true"""
).format(auth=AUTH, columns=INSERT_COLUMNS, other=OTHER_VALUES, record=RECORD)

BULK = sql.SQL(
    """WITH {auth},
f AS (
  INSERT INTO integrations_failedintegration ({columns})
  SELECT c.id, r.version_date, r.reason_type, coalesce(r.is_active, true), r.content_type,
         r.object_id, r.expiration_date, coalesce(r.retry_count, 1),
         coalesce(r.max_retry_count, 1), coalesce(r.retry_interval, 0), r.integration_action,
         r.log_id, now(), now(){other}
  FROM integrations_channel c,
       jsonb_to_recordset(%(body)s::jsonb) AS r(
         version_date timestamptz, reason_type varchar, is_active boolean, content_type integer,
         object_id bigint, expiration_date timestamptz, retry_count integer,
         max_retry_count integer, retry_interval integer, integration_action bigint,
         log_id bigint)
  WHERE c.id = %(channel)s AND EXISTS (SELECT 1 FROM auth)
  RETURNING *
)
SELECT EXISTS (SELECT 1 FROM auth), {record} FROM (SELECT 1) AS one LEFT JOIN f ON true"""
).format(auth=AUTH, columns=INSERT_COLUMNS, other=OTHER_VALUES, record=RECORD)

# What PATCH may change, with the type each value is cast to.
WRITABLE = {
    "version_date": ("version_date", "timestamptz"),
    "reason_type": ("reason_type", "varchar"),
    "is_active": ("is_active", "boolean"),
    "content_type": ("content_type_id", "integer"),
    "object_id": ("object_id", "bigint"),
    "expiration_date": ("expiration_date", "timestamptz"),
    "retry_count": ("retry_count", "integer"),
    "max_retry_count": ("max_retry_count", "integer"),
    "retry_interval": ("retry_interval", "integer"),
    "integration_action": ("integration_action_id", "bigint"),
    "log_id": ("log_id", "bigint"),
}

_list_statements: dict[tuple[str, ...], sql.Composed] = {}
_patch_statements: dict[tuple[str, ...], sql.Composed] = {}


def list_statement(filters: tuple[str, ...]) -> sql.Composed:
    statement = _list_statements.get(filters)
    if statement is None:
        statement = sql.SQL(LIST).format(
            auth=AUTH,
            record=RECORD,
            filters=sql.SQL(" ".join(FILTERS[name] for name in filters)),
        )
        _list_statements[filters] = statement
    return statement


def patch_statement(names: tuple[str, ...]) -> sql.Composed:
    statement = _patch_statements.get(names)
    if statement is None:
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = {}::{}").format(
                sql.Identifier(WRITABLE[name][0]), sql.Placeholder(name), sql.SQL(WRITABLE[name][1])
            )
            for name in names
        )
        statement = sql.SQL(
            """WITH {auth},
f AS (
  UPDATE integrations_failedintegration SET {assignments}, modified_date = now()
  WHERE id = %(pk)s AND channel_id = %(channel)s AND EXISTS (SELECT 1 FROM auth)
  RETURNING *
)
SELECT EXISTS (SELECT 1 FROM auth), {record} FROM (SELECT 1) AS one LEFT JOIN f ON true"""
        ).format(auth=AUTH, assignments=assignments, record=RECORD)
        _patch_statements[names] = statement
    return statement


# --- one connection per worker process -----------------------------------------------------

_connection: psycopg.Connection | None = None


def connection() -> psycopg.Connection:
    global _connection
    if _connection is None or _connection.closed or _connection.broken:
        _connection = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    return _connection


# --- answers -------------------------------------------------------------------------------

JSON = [("Content-Type", "application/json")]
STATUS = {
    200: "200 OK",
    201: "201 Created",
    400: "400 Bad Request",
    401: "401 Unauthorized",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
}


class Answer(Exception):
    def __init__(self, status: int, data):
        super().__init__(status)
        self.status = status
        self.data = data


def error(status: int, detail: str, code: str) -> Answer:
    return Answer(status, {"detail": detail, "code": code})


def records(rows, skip: int) -> list[dict]:
    """Records of `rows`, whose first `skip` columns are the statement's header."""
    return [dict(zip(FIELDS, row[skip:], strict=True)) for row in rows if row[skip] is not None]


def one_record(rows) -> dict:
    authed = rows[0][0]
    if not authed:
        raise error(401, "Invalid token.", "authentication_failed")
    found = records(rows, 1)
    if not found:
        raise error(404, "Not found.", "not_found")
    return found[0]


def run(statement, params: dict) -> list[tuple]:
    try:
        return connection().execute(statement, params).fetchall()
    except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
        raise error(400, str(exc).splitlines()[0], "invalid") from None


def positive_int(query: dict, name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise error(400, f"{name} must be an integer of at least 1.", "invalid")
    return int(raw)


def list_page(environ, params: dict):
    query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
    page = positive_int(query, "page", 1)
    limit = min(positive_int(query, "limit", PAGE_SIZE_DEFAULT), PAGE_SIZE_MAX)
    filters = []
    if "reason_type" in query:
        filters.append("reason_type")
        params["reason_type"] = query["reason_type"]
    if "is_active" in query:
        filters.append("is_active")
        params["is_active"] = query["is_active"].lower() in ("true", "1")
    params.update(limit=limit, offset=(page - 1) * limit)
    rows = run(list_statement(tuple(filters)), params)
    authed, found, total = rows[0][:3]
    if not authed:
        raise error(401, "Invalid token.", "authentication_failed")
    if not found:
        raise error(404, "Channel not found.", "not_found")
    if page > 1 and (page - 1) * limit >= total:
        raise error(404, "Invalid page.", "not_found")
    base = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}"
    base += environ.get("PATH_INFO", "")

    def link(number: int) -> str:
        linked = {**query, "page": str(number)}
        if number == 1:
            del linked["page"]
        return f"{base}?{urlencode(sorted(linked.items()))}" if linked else base

    return {
        "count": total,
        "next": link(page + 1) if page * limit < total else None,
        "previous": link(page - 1) if page > 1 else None,
        "results": records(rows, 3),
    }


def body(environ) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return environ["wsgi.input"].read(length) if length > 0 else b""


def json_body(environ) -> dict:
    try:
        data = orjson.loads(body(environ))
    except orjson.JSONDecodeError:
        raise error(400, "JSON parse error.", "parse_error") from None
    if not isinstance(data, dict):
        raise error(400, "Expected a JSON object.", "invalid")
    return data


def dispatch(environ) -> tuple[int, object]:
    match = ROUTE.match(environ.get("PATH_INFO", ""))
    if match is None:
        raise error(404, "Not found.", "not_found")
    channel, pk, bulk = match.groups()
    header = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "token" or not key:
        raise error(401, "Authentication credentials were not provided.", "not_authenticated")
    params = {"key": key.strip(), "channel": int(channel)}
    method = environ["REQUEST_METHOD"]
    if bulk:
        if method != "POST":
            raise error(405, f'Method "{method}" not allowed.', "method_not_allowed")
        params["body"] = body(environ).decode("utf-8", "replace")
        rows = run(BULK, params)
        if not rows[0][0]:
            raise error(401, "Invalid token.", "authentication_failed")
        created = records(rows, 1)
        if not created:
            raise error(404, "Channel not found.", "not_found")
        return 201, created
    if pk is None:
        if method == "GET":
            return 200, list_page(environ, params)
        if method == "POST":
            data = json_body(environ)
            params.update({name: data.get(name) for name in WRITABLE})
            return 201, one_record(run(CREATE, params))
        raise error(405, f'Method "{method}" not allowed.', "method_not_allowed")
    params["pk"] = int(pk)
    if method == "GET":
        return 200, one_record(run(RETRIEVE, params))
    if method == "PATCH":
        data = json_body(environ)
        names = tuple(sorted(name for name in data if name in WRITABLE))
        if not names:
            return 200, one_record(run(RETRIEVE, params))
        params.update({name: data[name] for name in names})
        return 200, one_record(run(patch_statement(names), params))
    raise error(405, f'Method "{method}" not allowed.', "method_not_allowed")


def application(environ, start_response):
    try:
        status, data = dispatch(environ)
    except Answer as answer:
        status, data = answer.status, answer.data
    payload = orjson.dumps(data)
    start_response(STATUS[status], [*JSON, ("Content-Length", str(len(payload)))])
    return [payload]
