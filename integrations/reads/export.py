"""Export: every record the list's filters match, in the list's sort, as CSV or NDJSON, streamed
in constant memory whatever their number.

On PostgreSQL, PostgreSQL writes the rows: the records' JSON is the fast path's SQL
(`json_columns_sql`, the filters' `where_sql`, the sort's `order_sql`), read through a named
cursor (NDJSON) or a `COPY ... TO STDOUT` (CSV), about ten times the rate of turning each row
into a model and a dict in Python (bench/CONSOLE.md). Elsewhere, and for a filter with no SQL
form, the queryset's rows are written in Python, by the API's representation."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import orjson
from django.db import connection
from django.http import StreamingHttpResponse
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from common.database import is_postgresql
from integrations.lifecycle.states import dispatch_of
from integrations.models import Channel, FailedIntegration
from integrations.reads.query import ListQuery
from integrations.reads.selectors import failed_integration_list
from integrations.records.registry import ANSWERED, BOOL
from integrations.records.representation import failed_integration_data, json_columns_sql

FORMATS = {"csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}
FORMAT_PARAM = "format"
CHUNK = 2000
COLUMNS = [field.name for field in ANSWERED]


def export_format(params) -> str:
    value = params.get(FORMAT_PARAM) or "csv"
    if value not in FORMATS:
        raise ValidationError({FORMAT_PARAM: [f"One of: {', '.join(FORMATS)}."]})
    return value


def export_response(channel: Channel, params, *, shows_errors: bool) -> StreamingHttpResponse:
    """The streamed answer; a bad filter or format answers 400 before anything is sent."""
    fmt = export_format(params)
    query = ListQuery.from_params(params)
    dispatch = dispatch_of(channel)
    if is_postgresql() and all(flt.fast for _, flt, _ in query.filters):
        select, values = _select_sql(channel, query, dispatch, shows_errors, csv=fmt == "csv")
        lines = _copied_lines(select, values) if fmt == "csv" else _fetched_lines(select, values)
    else:
        records = query.apply(failed_integration_list(channel=channel)).iterator(chunk_size=CHUNK)
        rows = _rows(records, dispatch=dispatch, shows_errors=shows_errors)
        lines = _csv_lines(rows) if fmt == "csv" else _ndjson_lines(rows)
    response = StreamingHttpResponse(lines, content_type=FORMATS[fmt])
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    name = f"failed-integrations-channel-{channel.pk}-{stamp}.{fmt}"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _rows(records, *, dispatch: dict[str, bool], shows_errors: bool) -> Iterator[dict]:
    """The records as the API answers them, their state as of the export's start."""
    now = timezone.now()
    for record in records:
        yield failed_integration_data(record, **dispatch, shows_errors=shows_errors, now=now)


def _csv_lines(rows) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for count, row in enumerate(rows, 1):
        writer.writerow(row)
        if count % 500 == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def _ndjson_lines(rows) -> Iterator[bytes]:
    chunk: list[bytes] = []
    for row in rows:
        chunk.append(orjson.dumps(row) + b"\n")
        if len(chunk) == 500:
            yield b"".join(chunk)
            chunk = []
    yield b"".join(chunk)


def _select_sql(
    channel: Channel,
    query: ListQuery,
    dispatch: dict[str, bool],
    shows_errors: bool,
    *,
    csv: bool,
) -> tuple[str, list]:
    """The records as PostgreSQL writes them: one JSON text each, or (`csv`) the columns of
    the CSV, booleans written as Python writes them."""
    columns = json_columns_sql(
        "fi",
        has_endpoint="TRUE" if dispatch["has_endpoint"] else "FALSE",
        held="TRUE" if dispatch["held"] else "FALSE",
        shows_errors="TRUE" if shows_errors else "FALSE",
    )
    conditions, values = query.where_sql("fi")
    where = " AND ".join(["fi.channel_id = %s", *conditions])
    if csv:
        selected = ", ".join(
            f"CASE WHEN r.\"{f.name}\" THEN 'True' ELSE 'False' END AS \"{f.name}\""
            if f.kind == BOOL
            else f'r."{f.name}"'
            for f in ANSWERED
        )
    else:
        selected = "row_to_json(r)::text"
    table = FailedIntegration._meta.db_table
    # Constants and SQL compiled from the filters' Q; the values are parameters.
    sql = (
        f"SELECT {selected} FROM {table} AS fi CROSS JOIN LATERAL (SELECT {columns}) AS r "  # noqa: S608
        f"WHERE {where} ORDER BY {query.order_sql('fi')}"
    )
    return sql, [channel.pk, *values]


def _fetched_lines(select: str, values: list) -> Iterator[bytes]:
    """NDJSON through a named cursor, CHUNK rows a fetch."""
    with connection.chunked_cursor() as cursor:
        cursor.execute(select, values)
        while rows := cursor.fetchmany(CHUNK):
            yield "".join(f"{row[0]}\n" for row in rows).encode()


def _copied_lines(select: str, values: list) -> Iterator[bytes]:
    """CSV as `COPY ... TO STDOUT` writes it, block by block."""
    connection.ensure_connection()
    with connection.connection.cursor() as cursor:
        copy_sql = cursor.mogrify(select, values)
        with cursor.copy(f"COPY ({copy_sql}) TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
            for block in copy:
                yield bytes(block)
