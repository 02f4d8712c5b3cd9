"""Export: every record the list's filters match, in the list's sort, as CSV or NDJSON, streamed
in constant memory whatever their number (a server-side cursor on PostgreSQL, fetched in
chunks; each chunk written as it comes)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import orjson
from django.http import StreamingHttpResponse
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from integrations.models import Channel
from integrations.reads.query import ListQuery
from integrations.reads.selectors import failed_integration_list
from integrations.records.registry import ANSWERED
from integrations.records.representation import failed_integration_data

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
    records = query.apply(failed_integration_list(channel=channel)).iterator(chunk_size=CHUNK)
    rows = _rows(records, has_endpoint=bool(channel.retry_endpoint), shows_errors=shows_errors)
    lines = _csv_lines(rows) if fmt == "csv" else _ndjson_lines(rows)
    response = StreamingHttpResponse(lines, content_type=FORMATS[fmt])
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    name = f"failed-integrations-channel-{channel.pk}-{stamp}.{fmt}"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _rows(records, *, has_endpoint: bool, shows_errors: bool) -> Iterator[dict]:
    """The records as the API answers them, their state as of the export's start."""
    now = timezone.now()
    for record in records:
        yield failed_integration_data(
            record, has_endpoint=has_endpoint, shows_errors=shows_errors, now=now
        )


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
