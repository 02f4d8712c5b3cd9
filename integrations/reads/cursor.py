"""Keyset ("cursor") pagination of the list: `?cursor=*` starts, `next` carries the cursor.

A page number makes the database walk every row before the page; a cursor says where the last
page ended (its sort value and pk), so every page costs what the first one costs, however deep,
and no record is skipped or repeated while others are added or removed. It takes the list's
filters and one `sort` field (the pk breaks ties).

Empty values sort last ascending and first descending, as in the page mode.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass
from typing import Any

import orjson
from django.db.models import Q
from rest_framework.exceptions import ValidationError

from common.fields import INT64_MAX, format_datetime_utc, parse_datetime_utc
from integrations.reads.filtersets import SORT_FIELDS
from integrations.records.registry import BY_NAME, DATETIME

CURSOR_PARAM = "cursor"
START = "*"
DATETIME_FIELDS = {name for name in SORT_FIELDS if BY_NAME[name].kind == DATETIME}
NULLABLE_FIELDS = {name for name in SORT_FIELDS if BY_NAME[name].nullable}
INVALID = "Invalid cursor: give * to start, then follow `next`."


@dataclass(frozen=True)
class Position:
    """Where a page ended: the last record's sort value and pk."""

    value: Any
    pk: int


@dataclass(frozen=True)
class CursorRequest:
    field: str  # the sort field ("pk" for the default order)
    descending: bool
    position: Position | None  # None: the first page

    @property
    def column(self) -> str:
        return BY_NAME[self.field].column

    @property
    def nullable(self) -> bool:
        return self.field in NULLABLE_FIELDS

    def encode(self, value: Any, pk: int) -> str:
        """The cursor after a record: its sort value (a datetime, or as the API writes it) and
        its pk."""
        if isinstance(value, dt.datetime):
            value = format_datetime_utc(value)
        raw = orjson.dumps([("-" if self.descending else "") + self.field, value, pk])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_request(raw: str | None, sort: tuple[str, ...]) -> CursorRequest | None:
    """The cursor request of the query parameters, or None in page mode; 400 when invalid."""
    if raw is None or raw == "":
        return None
    if len(sort) > 2 or (len(sort) == 2 and sort[1].lstrip("-") != "pk"):
        raise ValidationError({"sort": ["With a cursor, sort by one field (the pk breaks ties)."]})
    first = sort[0]
    request = CursorRequest(
        field=first.lstrip("-"), descending=first.startswith("-"), position=None
    )
    if raw == START:
        return request
    try:
        padded = raw + "=" * (-len(raw) % 4)
        sort_key, value, pk = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise ValidationError({CURSOR_PARAM: [INVALID]}) from None
    if sort_key != first:
        raise ValidationError({CURSOR_PARAM: ["This cursor was made for another sort."]})
    if not isinstance(pk, int) or isinstance(pk, bool) or not 0 < pk <= INT64_MAX:
        raise ValidationError({CURSOR_PARAM: [INVALID]})
    return CursorRequest(
        field=request.field,
        descending=request.descending,
        position=Position(value=_read_value(request.field, value), pk=pk),
    )


def _read_value(field: str, value: Any) -> Any:
    if field == "pk":
        return None
    if value is None and field in NULLABLE_FIELDS:
        return None
    try:
        if field in DATETIME_FIELDS:
            return parse_datetime_utc(value)
        if field in SORT_FIELDS and isinstance(value, int) and not isinstance(value, bool):
            return value
    except (ValueError, TypeError, OverflowError):
        pass
    raise ValidationError({CURSOR_PARAM: [INVALID]})


def after_q(request: CursorRequest) -> Q:
    """The records after the position, as a queryset filter."""
    position = request.position
    if position is None:
        return Q()
    later = "lt" if request.descending else "gt"
    if request.field == "pk":
        return Q(**{f"pk__{later}": position.pk})
    field = request.field
    if position.value is None:  # within the empty values (last ascending, first descending)
        rest = Q(**{f"{field}__isnull": True, f"pk__{later}": position.pk})
        return rest | Q(**{f"{field}__isnull": False}) if request.descending else rest
    same = Q(**{field: position.value, f"pk__{later}": position.pk})
    beyond = Q(**{f"{field}__{later}": position.value}) | same
    if request.nullable and not request.descending:
        beyond |= Q(**{f"{field}__isnull": True})
    return beyond


def after_sql(request: CursorRequest, alias: str) -> list[tuple[str, list, str]]:
    """The records after the position, as SQL on the table aliased `alias`: one or two
    (condition, params, order) parts to read in turn. Each part is a range of one index, so a
    page deep in a channel costs what the first page costs; a second part covers the step from
    values to empty values (or back)."""
    column, pk = f"{alias}.{request.column}", f"{alias}.id"
    direction = "DESC" if request.descending else "ASC"
    order = f"{column} {direction}, {pk} {direction}" if column != pk else f"{pk} {direction}"
    operator = "<" if request.descending else ">"
    position = request.position
    if not request.nullable:
        if position is None:
            return [("TRUE", [], order)]
        if column == pk:
            return [(f"{pk} {operator} %s", [position.pk], order)]
        return [(f"({column}, {pk}) {operator} (%s, %s)", [position.value, position.pk], order)]
    nulls_order = f"{pk} {direction}"
    values = f"{column} IS NOT NULL"
    nulls = f"{column} IS NULL"
    if request.descending:  # empty values first, then values
        if position is None:
            return [(nulls, [], nulls_order), (values, [], order)]
        if position.value is None:
            return [(f"{nulls} AND {pk} < %s", [position.pk], nulls_order), (values, [], order)]
        return [(f"({column}, {pk}) < (%s, %s)", [position.value, position.pk], order)]
    if position is None:
        return [(values, [], order), (nulls, [], nulls_order)]
    if position.value is None:
        return [(f"{nulls} AND {pk} > %s", [position.pk], nulls_order)]
    return [
        (f"({column}, {pk}) > (%s, %s)", [position.value, position.pk], order),
        (nulls, [], nulls_order),
    ]
