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
from django.db.models import F, Q
from django.db.models.fields.tuple_lookups import Tuple, TupleGreaterThan, TupleLessThan
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


def after_parts(request: CursorRequest) -> list[tuple[Q, tuple[str, ...]]]:
    """The records after the position: one or two (condition, sort keys) parts to read in turn.
    Each part is a range of one index, so a page deep in a channel costs what the first page
    costs; a second part covers the step from values to empty values (or back)."""
    sign = "-" if request.descending else ""
    keys = (f"{sign}pk",) if request.field == "pk" else (f"{sign}{request.field}", f"{sign}pk")
    pks_only = (f"{sign}pk",)
    later = TupleLessThan if request.descending else TupleGreaterThan
    position = request.position
    beyond = Q()
    if position is not None and request.field == "pk":
        beyond = Q(**{f"pk__{'lt' if request.descending else 'gt'}": position.pk})
    elif position is not None and position.value is not None:
        beyond = Q(later(Tuple(F(request.field), F("pk")), (position.value, position.pk)))
    if not request.nullable:
        return [(beyond, keys)]
    values, nulls = (
        Q(**{f"{request.field}__isnull": False}),
        Q(**{f"{request.field}__isnull": True}),
    )
    if position is not None and position.value is None:  # within the empty values
        nulls &= Q(**{f"pk__{'lt' if request.descending else 'gt'}": position.pk})
        if not request.descending:
            return [(nulls, pks_only)]  # values came first
    elif position is not None:
        values = beyond  # a row comparison is never true of an empty value
        if request.descending:
            return [(values, keys)]  # empty values came first
    if request.descending:  # empty values first, then values
        return [(nulls, pks_only), (values, keys)]
    return [(values, keys), (nulls, pks_only)]


def after_q(request: CursorRequest) -> Q:
    """The records after the position, as a queryset filter."""
    parts = [condition for condition, _ in after_parts(request)]
    if any(not condition for condition in parts):
        return Q()
    combined = parts[0]
    for condition in parts[1:]:
        combined |= condition
    return combined


def after_sql(request: CursorRequest, alias: str) -> list[tuple[str, list, str]]:
    """`after_parts` as SQL on the table aliased `alias`: (condition, params, order) each."""
    from integrations.reads.query import condition_sql, order_sql

    return [
        (*condition_sql(condition, alias), order_sql(keys, alias))
        for condition, keys in after_parts(request)
    ]
