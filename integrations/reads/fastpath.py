"""The fast path (PostgreSQL): a retrieve, a list page or a report of one failure in one SQL
statement.

Reads are most of the traffic and the part that must stay fast at millions of rows; reports of
single failures are the rest. For a GET of a record or of a list page, this middleware
authenticates, checks the channel, counts and fetches the page in a single statement, and
PostgreSQL writes the JSON of the records itself (`row_to_json`), so that no Python object is
made per record. For a POST of one failure, the body is validated by the same rules as the
regular view's (`validation.validate_item`), and one statement authenticates, checks the
channel's write access and the integration action, inserts and answers the record's JSON; the
supersede that follows is the regular path's own.

It answers only the successful case. Anything else (no or bad token, unknown channel or record,
a bad parameter or body, a page past the end) goes on to the regular DRF view, which finds the
same problem and answers it in the one place errors are made: the two paths cannot disagree on
an error, and the regular path is the reference the test suite compares the fast one against.
A write falls back only when its statement failed, that is when it wrote nothing; a write
whose connection was lost (its statement may have been committed) answers 503, which the client
retries.
"""

from __future__ import annotations

import logging
import re
from contextlib import nullcontext
from functools import cache
from typing import NamedTuple

import orjson
import psycopg
from django.core.exceptions import DisallowedHost
from django.db import DatabaseError, connection, transaction
from django.http import HttpResponse
from django.urls import get_resolver
from django.utils import timezone
from rest_framework.exceptions import APIException, ParseError

from accounts.authentication import authenticates_sql, key_from_header
from accounts.models import hash_key
from accounts.usage import note_use, token_username
from common.database import bind, fetchone_prepared, is_postgresql
from common.exceptions import (
    LOST_CONNECTION,
    ServiceUnavailable,
    database_unavailable,
    error_body,
    lost_connection,
)
from common.fields import INT64_MAX
from common.pagination import PageRequest, cursor_link, page_links
from common.parsers import JSONParser, parse_json
from common.postgresql.base import timed_out
from integrations.api.access import READ, WRITE, may_sql
from integrations.counting import counts
from integrations.lifecycle import policies, transitions
from integrations.models import FailedIntegration
from integrations.reads.cursor import CURSOR_PARAM, after_sql, cursor_request
from integrations.reads.query import ListQuery
from integrations.records import services
from integrations.records.representation import CHANNEL_SQL, HELD_SQL, JSON_COLUMNS, etag
from integrations.records.validation import content_type_known, validate_item

logger = logging.getLogger(__name__)

INT64_DIGITS = len(str(INT64_MAX))


LIST_ROUTE, DETAIL_ROUTE = "failed-integration-list", "failed-integration-detail"


def _route(name: str) -> re.Pattern:
    """The regular expression the API's URL patterns match the named route with (below the
    API's prefix)."""
    from integrations.api.urls import urlpatterns

    return next(pattern for pattern in urlpatterns if pattern.name == name).pattern.regex


def _api_prefix() -> str:
    """Where the project's URLs include the API's."""
    from integrations.api import urls

    for pattern in get_resolver().url_patterns:
        if getattr(pattern, "urlconf_name", None) is urls:
            return f"/{pattern.pattern}"
    raise LookupError("the API's URLs are not included")


def _ids(match: re.Match) -> tuple[int, ...] | None:
    """The route's ids, or None when one cannot be a stored id (the regular view answers)."""
    values = match.groups()
    if any(len(value) > INT64_DIGITS for value in values):
        return None
    return tuple(int(value) for value in values)


TABLE = FailedIntegration._meta.db_table

# The first page of a filtered list, sorted by a column the filters' indexes do not serve, is
# found one of two ways, and PostgreSQL cannot tell which is fast: walking the sort's index
# until enough records pass the filters (fast when matches are common early in the sort order,
# endless when the filter and the sort are correlated the wrong way), or reading every match
# through the filters' indexes and sorting them (fast when matches are few). The exact count
# is known before the page is chosen, so the statement does both, bounded: with more than
# WALK_ROWS matches it walks at most WALK_ROWS records of the sort's index, and only if those
# did not hold the page does it read the matches and sort them. Pages deeper than
# WALK_PAGE_MAX records keep PostgreSQL's own plan.
WALK_ROWS = 5000
WALK_PAGE_MAX = 1000
# Filters whose (channel, field, id) index lists their matches in pk order: sorted by pk, such
# a page is an index range, which PostgreSQL finds by itself.
PK_ORDERED_FILTERS = frozenset({"reason_type", "is_active", "exhausted", "parked"})


def _walks(query: ListQuery, need: int) -> bool:
    """Whether a filtered page of `need` records is found by the bounded walk (see WALK_ROWS).
    Not when PostgreSQL's own plan is an index range: sorted by pk with a pk-ordered filter, or
    sorted by a column that a filter tests (a range of the sort's own index; `exhausted` counts
    as testing the retry count, where a bounded walk misses and the matches are many)."""
    first = query.sort_columns[0]
    return (
        need <= WALK_PAGE_MAX
        and not (first == "id" and query.filter_names & PK_ORDERED_FILTERS)
        and first not in query.filter_columns
    )


# The token authenticates and its user may read (or write) the channel (access.py): the
# statement's guard, with what the answer shows (the channel app's error text only to those who
# may change the channel's records).
AUTHORIZED_CHANNEL_SQL = f"""
    SELECT c.id, c.retry_endpoint <> '' AS has_endpoint, {HELD_SQL} AS held,
        {{shows}} AS shows_errors
    FROM integrations_channel c
    JOIN accounts_token t ON t.key_hash = %s
    JOIN auth_user u ON u.id = t.user_id
    WHERE c.id = %s AND {authenticates_sql("t", "u")} AND {{may}}
"""
READABLE_CHANNEL_SQL = AUTHORIZED_CHANNEL_SQL.format(
    may=may_sql(READ, user_alias="u", channel_alias="c"),
    shows=may_sql(WRITE, user_alias="u", channel_alias="c"),
)
WRITABLE_CHANNEL_SQL = AUTHORIZED_CHANNEL_SQL.format(
    may=may_sql(WRITE, user_alias="u", channel_alias="c"), shows="TRUE"
)

RECORD_SQL = f"""
    WITH allowed AS ({{guard}})
    SELECT row_to_json(r)::text, r.pk, r.modified_date FROM (
        SELECT {JSON_COLUMNS} FROM {TABLE} AS fi
        WHERE fi.channel_id = %s AND fi.id = %s AND EXISTS (SELECT 1 FROM allowed)
    ) AS r
"""
# A record, by either front door (see `retrieve`).
RETRIEVE_SQL = {
    guard: RECORD_SQL.format(guard=guard)
    for guard in (READABLE_CHANNEL_SQL, WRITABLE_CHANNEL_SQL, CHANNEL_SQL)
}


class FastPathMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.enabled = is_postgresql()
        self.prefix = _api_prefix()
        self.list_route = _route(LIST_ROUTE)
        self.detail_route = _route(DETAIL_ROUTE)

    def __call__(self, request):
        if self.enabled and request.method in ("GET", "POST", "PUT", "PATCH"):
            response = self.respond(request)
            if response is not None:
                return response
        return self.get_response(request)

    def respond(self, request) -> HttpResponse | None:
        path = request.path_info
        if not path.startswith(self.prefix):
            return None
        path = path[len(self.prefix) :]
        header = request.META.get("HTTP_AUTHORIZATION")
        if not header:
            return None
        try:
            request.get_host()  # a Host the service does not serve: the regular path's 400
        except DisallowedHost:
            return None
        try:
            key_hash = hash_key(key_from_header(header))
        except APIException:
            return None  # the regular view answers the error
        response = self.route(request, path, key_hash)
        if response is not None:
            note_use(key_hash)
            request.token_username = token_username(key_hash)  # for the access log
        return response

    def route(self, request, path: str, key_hash: str) -> HttpResponse | None:
        """The answer of the statement the request is routed to, or None when the regular view
        is to answer."""
        try:
            method = request.method
            match = self.detail_route.match(path)
            ids = _ids(match) if match else None
            if ids:
                # The route of the metrics and the access log (the URL resolver is not asked).
                request.matched_route = (DETAIL_ROUTE, ids[0])
            if ids and method == "GET":
                channel_id, pk = ids
                return retrieve(channel_id, pk, (READABLE_CHANNEL_SQL, [key_hash, channel_id]))
            if ids and method in ("PUT", "PATCH"):
                return update(request, *ids, key_hash, partial=method == "PATCH")
            match = self.list_route.match(path)
            ids = _ids(match) if match else None
            if ids:
                request.matched_route = (LIST_ROUTE, ids[0])
            if ids and method == "GET":
                channel_id = ids[0]
                return list_page(
                    request, channel_id, (READABLE_CHANNEL_SQL, [key_hash, channel_id])
                )
            if ids and method == "POST":
                return create(request, *ids, key_hash)
        except APIException:
            return None  # the regular view answers the error
        except LOST_CONNECTION as exc:
            connection.close()
            if request.method in WRITES:
                # The write may have been committed before the connection was lost: the
                # regular view would write it again. 503: the client retries it.
                return unavailable(exc)
            if timed_out(exc):
                # The database did not answer in time: the regular view would wait as long
                # again before answering the same.
                return unavailable(exc)
            # A read on a connection the database had closed (it restarted, say): the regular
            # view connects again, and answers 503 if the database is really down.
            return None
        return None


WRITES = ("POST", "PUT", "PATCH")


def unavailable(exc: Exception) -> HttpResponse:
    body = orjson.dumps(error_body(ServiceUnavailable().detail))
    return database_unavailable(exc, _json_response(body, status=503))


def _json_response(body: bytes, status: int = 200) -> HttpResponse:
    return HttpResponse(body, content_type="application/json", status=status)


def retrieve(channel_id: int, pk: int, guard: tuple[str, list]) -> HttpResponse | None:
    """A record in one statement, which both front doors run, as a list page (`list_page`):
    the middleware with the token's guard, the regular view on PostgreSQL with the channel's.
    None when the regular view is to answer (not found, or not allowed)."""
    if channel_id > INT64_MAX or pk > INT64_MAX:
        return None
    row = fetchone_prepared(RETRIEVE_SQL[guard[0]], [*guard[1], channel_id, pk])
    if row is None:
        return None
    response = _json_response(row[0].encode())
    response["ETag"] = etag(row[1], row[2])
    return response


def list_page(request, channel_id: int, guard: tuple[str, list]) -> HttpResponse | None:
    """A list page in one statement, which both front doors run: this middleware, with the
    token's guard, and the regular view on PostgreSQL (`CHANNEL_SQL`), so that a page is found
    by the same plan whoever asks. `guard`: a statement of the channel's id and whether it has
    a retry endpoint, when the request may read it. None when the regular view's queryset is
    to answer (an error, or a filter with no SQL form)."""
    if channel_id > INT64_MAX:
        return None
    params = request.GET
    page_request = PageRequest.from_query(params)
    if page_request.offset > INT64_MAX:
        return None  # necessarily past the end
    query = ListQuery.from_params(params)
    if not all(flt.fast for _, flt, _ in query.filters):
        return None
    cursor = cursor_request(params.get(CURSOR_PARAM), query.sort)
    conditions, values = query.where_sql("fi")
    count_sql, count_params = counts.count_sql(channel_id, query.filters)
    if not count_sql:
        count_sql = f"SELECT count(*), 0 FROM {TABLE} AS fi WHERE " + " AND ".join(
            ["fi.channel_id = %s", *conditions]
        )
        count_params = [channel_id, *values]
    # The channel is a parameter, not the guard's output, so that PostgreSQL plans the page on
    # the channel's own index range (a join would hide the channel from the planner).
    where = " AND ".join(["fi.channel_id = %s", "EXISTS (SELECT 1 FROM allowed)", *conditions])
    values = [channel_id, *values]
    # The page is chosen on ids alone (an index range), and only its records are turned into
    # JSON: rows skipped by OFFSET would otherwise be formatted too.
    ids = f"SELECT fi.id FROM {TABLE} AS fi WHERE {where}"
    order = query.order_sql("fi")
    walk_cte, walk_params = "", []
    results_sql = "coalesce(string_agg(row_to_json(p)::text, ','), '')"
    need = page_request.offset + page_request.limit
    if cursor is None and conditions and _walks(query, need):
        # A filtered page: see WALK_ROWS.
        keys = ", ".join(f"fi.{column}" for column in query.sort_columns)
        walk_cte = f"""walk AS MATERIALIZED (
            SELECT {keys} FROM (
                SELECT * FROM {TABLE} AS fi
                WHERE fi.channel_id = %s AND EXISTS (SELECT 1 FROM allowed)
                    AND (SELECT total FROM counted) > %s
                ORDER BY {order} LIMIT %s
            ) AS fi WHERE {" AND ".join(conditions)} ORDER BY {order} LIMIT %s
        ),"""
        walk_params = [channel_id, WALK_ROWS, WALK_ROWS, *values[1:], need]
        # Gated by its LIMIT rather than by a condition: a LIMIT of 0 never starts the branch,
        # whereas a plan with parallel workers would start them before testing a condition.
        read = (
            f"SELECT {keys} FROM {TABLE} AS fi WHERE {where} "
            f"ORDER BY {query.order_sql('fi', opaque=True)} "
            f"LIMIT (CASE WHEN (SELECT count(*) FROM walk) < %s THEN %s ELSE 0 END)"
        )
        chosen = (
            f"SELECT fi.id FROM (SELECT * FROM walk WHERE (SELECT count(*) FROM walk) >= %s "
            f"UNION ALL ({read})) AS fi ORDER BY {order} LIMIT %s OFFSET %s"
        )
        page_params = [need, *values, need, need, page_request.limit, page_request.offset]
    elif cursor is None and not conditions and page_request.offset == 0:
        # The first page of a channel, the most asked-for list: with the limit written into
        # the statement, PostgreSQL's generic plan of it is as cheap as a custom one, so the
        # prepared statement stops being planned on every request (planning cost more than
        # running it). The limit is a validated integer, and takes few values.
        chosen = f"{ids} ORDER BY {order} LIMIT {int(page_request.limit)}"
        page_params = values
    elif cursor is None:
        chosen = f"{ids} ORDER BY {order} LIMIT %s OFFSET %s"
        page_params = [*values, page_request.limit, page_request.offset]
    else:
        # One more record than the page, to know whether there is a next page.
        size = page_request.limit + 1
        parts = after_sql(cursor, "fi")
        chosen = "SELECT id FROM ({}) AS parts LIMIT %s".format(
            " UNION ALL ".join(
                f"({ids} AND {condition} ORDER BY {part_order} LIMIT %s)"
                for condition, _, part_order in parts
            )
        )
        page_params = [
            value for _, part_params, _ in parts for value in (*values, *part_params, size)
        ]
        page_params.append(size)
        results_sql = "array_agg(row_to_json(p)::text)"
    page_sql = (
        f"SELECT {JSON_COLUMNS} FROM {TABLE} AS fi WHERE fi.id IN ({chosen}) ORDER BY {order}"
    )
    sql = f"""
        WITH allowed AS ({guard[0]}),
        counted(total, deltas) AS ({count_sql}),
        {walk_cte}
        page AS ({page_sql})
        SELECT
            (SELECT id FROM allowed),
            counted.total,
            counted.deltas,
            (SELECT {results_sql} FROM page AS p)
        FROM counted
    """
    row = fetchone_prepared(sql, [*guard[1], *count_params, *walk_params, *page_params])
    allowed, total, deltas, results = row
    if allowed is None:
        return None
    if cursor is None and page_request.past_the_end(total):
        return None  # the regular view answers 404
    if deltas > counts.COMPACT_AFTER_DELTAS:
        counts.compact(channel_id)
    if cursor is None:
        next_url, previous_url = page_links(request, page_request, total)
    else:
        results = results or []
        next_url = previous_url = None
        if len(results) > page_request.limit:
            results = results[: page_request.limit]
            last = orjson.loads(results[-1])
            next_url = cursor_link(request, cursor.encode(last[cursor.field], last["pk"]))
        results = ",".join(results)
    head = orjson.dumps({"count": total, "next": next_url, "previous": previous_url})
    return _json_response(b'%s,"results":[%s]}' % (head[:-1], results.encode()))


@cache
def _insert_sql() -> tuple[str, tuple]:
    """The report's statement, and the model fields whose values it takes in order.

    Every value is cast to its column's type (character columns to text: a cast to varchar(n)
    would cut a value short rather than refuse it; validation has checked the lengths)."""
    fields = services.INSERTED_FIELDS

    def cast(field) -> str:
        if field.get_internal_type() in ("CharField", "TextField"):
            return "text"
        return field.db_type(connection)

    columns = ", ".join(f.column for f in fields)
    values = ", ".join(f"%s::{cast(f)}" for f in fields)
    sql = f"""
        WITH allowed AS ({WRITABLE_CHANNEL_SQL}),
        inserted AS (
            INSERT INTO {TABLE} ({columns})
            SELECT {values} FROM allowed
            WHERE %s::bigint IS NULL OR EXISTS (
                SELECT 1 FROM integrations_integrationaction a
                WHERE a.id = %s::bigint AND a.channel_id = allowed.id
            )
            RETURNING *
        )
        SELECT row_to_json(r)::text, r.pk FROM (
            SELECT {JSON_COLUMNS} FROM inserted AS fi
        ) AS r
    """
    return sql, fields


NO_BODY = object()


def _json_body(request):
    """The request's JSON body, or NO_BODY when the regular view is to judge it."""
    if request.content_type != JSONParser.media_type:
        return NO_BODY
    if request.content_params.get("charset", "utf-8").lower() not in ("utf-8", "utf8"):
        return NO_BODY
    try:
        return parse_json(request.body)
    except ParseError:
        return NO_BODY


# Whether a stored report's object has another active failure (most have none): asked after
# the insert has committed, so that of two concurrent reports of one object the later check
# sees both. A prepared statement: planning a query of this table, with its many indexes,
# costs more than running it.
OTHER_ACTIVE_SQL = f"""
    SELECT EXISTS (
        SELECT 1 FROM {TABLE}
        WHERE channel_id = %s AND content_type_id = %s AND object_id = %s AND is_active
            AND id <> %s
    )
"""


def create(request, channel_id: int, key_hash: str) -> HttpResponse | None:
    """A channel app's report of one failure (the regular view's `services`
    `failed_integration_create`, in one statement). A report with an Idempotency-Key is the
    regular view's, which writes its key in the records' transaction."""
    if channel_id > INT64_MAX or "HTTP_IDEMPOTENCY_KEY" in request.META:
        return None
    payload = _json_body(request)
    if payload is NO_BODY:
        return None
    values, errors = validate_item(payload, channel_id=channel_id)
    if errors or not content_type_known(values["content_type_id"]):
        return None
    now = timezone.now()
    record = services.new_records(channel_id, [values], now=now)[0]
    policies.schedule([record], now=now)
    sql, fields = _insert_sql()
    action_id = record.integration_action_id
    params = [
        key_hash,
        channel_id,
        *(f.get_db_prep_save(getattr(record, f.attname), connection) for f in fields),
        action_id,
        action_id,
    ]
    try:
        row = fetchone_prepared(sql, params)
    except (psycopg.errors.IntegrityError, psycopg.errors.DataError):
        return None  # nothing was written; the regular view says what is wrong
    if row is None:
        return None  # not allowed, or not the channel's action: nothing was written
    body, record.pk = row
    # The record is stored: from here on the answer is 201 with it, whatever happens (the
    # next report of the object supersedes what this one could not).
    try:
        others = fetchone_prepared(
            OTHER_ACTIVE_SQL,
            [channel_id, record.content_type_id, record.object_id, record.pk],
        )[0]
        if others and services.supersede_recorded(channel_id, [record], now=now):
            body = fetchone_prepared(
                RETRIEVE_SQL[WRITABLE_CHANNEL_SQL], [key_hash, channel_id, channel_id, record.pk]
            )[0]
    except (DatabaseError, psycopg.Error) as exc:
        logger.warning(
            "supersede after a report failed: %s", exc, exc_info=not lost_connection(exc)
        )
        connection.close()
    return _json_response(body.encode(), status=201)


# The update's own statement (`services.update_statement`), guarded by the token's write
# access to the channel, answering the record's JSON.
ALLOWED = "EXISTS (SELECT 1 FROM allowed)"


class _StandIn(NamedTuple):
    """The part of a record that `transitions.supersede` reads."""

    object_id: int


@cache
def _update_sql(names: tuple[str, ...]) -> tuple[str, list]:
    update, params = services.update_statement(names, guard=ALLOWED)
    sql = f"""
        WITH allowed AS ({WRITABLE_CHANNEL_SQL}), updated AS ({update})
        SELECT row_to_json(r)::text, r.pk, r.modified_date, r.object_id FROM (
            SELECT {JSON_COLUMNS} FROM updated AS fi
        ) AS r
    """
    return sql, params


def update(
    request, channel_id: int, pk: int, key_hash: str, *, partial: bool
) -> HttpResponse | None:
    """PUT or PATCH of a record: the regular view's `services.failed_integration_update`, with
    authentication and the channel's write access in its one statement (and the supersede
    that a new version or a record active again calls for, in its transaction). A conditional
    write (`If-Match`) is the regular view's, which locks the record."""
    if channel_id > INT64_MAX or pk > INT64_MAX or "HTTP_IF_MATCH" in request.META:
        return None
    payload = _json_body(request)
    if payload is NO_BODY:
        return None
    values = services.validated(payload, channel_id=channel_id, partial=partial)
    sql, params = _update_sql(tuple(values))
    named = services.update_params(channel_id, pk, values)
    params = [key_hash, channel_id, *bind(params, named)]
    superseding = services.superseding(values)
    try:
        with transaction.atomic() if superseding else nullcontext():
            row = fetchone_prepared(sql, params)
            if row is None:
                return None  # not allowed, or no such record: nothing was written
            if superseding and transitions.supersede(
                channel_id, [_StandIn(row[3])], now=named["modified_date"]
            ):
                row = fetchone_prepared(
                    RETRIEVE_SQL[WRITABLE_CHANNEL_SQL], [key_hash, channel_id, channel_id, pk]
                )
    except (psycopg.errors.IntegrityError, psycopg.errors.DataError):
        return None  # nothing was written; the regular view says what is wrong
    response = _json_response(row[0].encode())
    response["ETag"] = etag(row[1], row[2])
    return response
