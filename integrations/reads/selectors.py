"""Reads."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db.models import Case, Count, QuerySet, Value, When
from django.db.models.fields import BooleanField
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from common.database import is_postgresql
from common.fields import INT64_MAX
from integrations.choices import State
from integrations.counting import counts
from integrations.lifecycle.states import (
    dispatch_of,
    state_expression,
    timed_states_q,
    untimed_state,
)
from integrations.models import Channel, FailedIntegration
from integrations.reads.cursor import CURSOR_PARAM, CursorRequest, after_q, cursor_request
from integrations.reads.query import ListQuery

# What the stats endpoint can group by (`expired` and `state` are computed; the others are
# columns).
GROUP_KEYS = ("state", "reason_type", "content_type", "is_active", "exhausted", "expired")


def channel_get(*, channel_id: int) -> Channel | None:
    if not 0 < channel_id <= INT64_MAX:
        return None
    return Channel.objects.filter(pk=channel_id).first()


def failed_integration_list(*, channel: Channel) -> QuerySet[FailedIntegration]:
    return FailedIntegration.objects.filter(channel=channel).order_by("pk")


def failed_integration_filter(*, channel: Channel, params) -> QuerySet[FailedIntegration]:
    """The channel's records that match the query parameters, in their `sort` order (pk by
    default). A bad value for a known parameter raises a 400 naming it."""
    return ListQuery.from_params(params).apply(failed_integration_list(channel=channel))


@dataclass(frozen=True)
class ListSource:
    queryset: QuerySet[FailedIntegration]  # filtered and sorted (after the cursor, if any)
    count: int  # of the filtered records (all pages)
    cursor: CursorRequest | None  # None: page mode


def failed_integration_list_source(
    *, channel: Channel, params, count: int | None = None
) -> ListSource:
    """The records of a list request: filtered, sorted, from its cursor (if any), and their
    exact count (`count` when the caller has it, else from the counts when they can answer,
    else counted)."""
    query = ListQuery.from_params(params)
    cursor = cursor_request(params.get(CURSOR_PARAM), query.sort)
    queryset = query.apply(failed_integration_list(channel=channel))
    total = count
    if total is None and is_postgresql():
        total = counts.count(channel.pk, query.filters)
        if total is None and query.filter_names & set(STATE_FILTERS):
            groups = counted_groups(channel, query.filters, [])
            total = None if groups is None else sum(n for (n,) in groups)
    if total is None:
        total = queryset.count()
    if cursor is not None:
        queryset = queryset.filter(after_q(cursor))
    return ListSource(queryset=queryset, count=total, cursor=cursor)


@dataclass(frozen=True)
class DueBacklog:
    count: int
    oldest: dt.datetime | None  # when the longest-waiting due record became due


def due_backlog(*, channel: Channel, now: dt.datetime, count: int | None = None) -> DueBacklog:
    """The channel's records that are due now, sent or held (its dispatch held: see
    lifecycle/states.py), and since when the longest-waiting one is due: the first entry of the
    partial index of due records. None are for a channel without a retry endpoint (nothing is
    sent). `count`: the caller's count of them (from the counts by state), else counted."""
    if not channel.retry_endpoint:
        return DueBacklog(0, None)
    timed = timed_states_q(now=now, has_endpoint=True, held=False)
    waiting = FailedIntegration.objects.filter(channel=channel).filter(timed[State.DUE])
    oldest = waiting.order_by("next_retry_at").values_list("next_retry_at", flat=True).first()
    return DueBacklog(waiting.count() if count is None else count, oldest)


def failed_integration_get(
    *, channel: Channel, pk: int, for_update: bool = False
) -> FailedIntegration | None:
    if not 0 < pk <= INT64_MAX:
        return None
    queryset = FailedIntegration.objects.filter(channel=channel, pk=pk)
    if for_update:
        queryset = queryset.select_for_update()
    return queryset.first()


def parse_group_by(raw: str | None) -> list[str]:
    if raw is None or raw.strip() == "":
        return ["reason_type"]
    keys = [key.strip() for key in raw.split(",") if key.strip()]
    unknown = [key for key in keys if key not in GROUP_KEYS]
    if unknown or len(keys) != len(set(keys)) or not keys:
        raise ValidationError(
            {
                "group_by": [
                    f"Give distinct keys among {', '.join(GROUP_KEYS)}, comma-separated"
                    + (f"; unknown: {', '.join(unknown)[:200]}." if unknown else ".")
                ]
            }
        )
    return keys


def failed_integration_stats(*, channel: Channel, params) -> dict[str, Any]:
    """One row per group with its count, largest groups first."""
    keys = parse_group_by(params.get("group_by"))
    query = ListQuery.from_params(params)
    columns = ["content_type_id" if key == "content_type" else key for key in keys]
    rows = counted_groups(channel, query.filters, columns) if is_postgresql() else None
    if rows is None:
        rows = _group_rows(
            query.apply(failed_integration_list(channel=channel)),
            keys,
            columns,
            dispatch=dispatch_of(channel),
        )
    rows.sort(key=lambda row: (-row[-1], *row[:-1]))
    results = []
    for *values, count in rows:
        result = dict(zip(keys, values, strict=True))
        if "content_type" in result:
            result["content_type_name"] = content_type_name(result["content_type"])
        result["count"] = count
        results.append(result)
    return {
        "count": sum(row["count"] for row in results),
        "group_by": keys,
        "results": results,
    }


STATE_FILTERS = ("state", "state__in")


def counted_groups(
    channel: Channel, filters, columns: list[str], *, now: dt.datetime | None = None
) -> list[tuple] | None:
    """(*values, count) per group of `columns` (cube columns and `state`) from the counts
    (PostgreSQL), or None when they cannot answer the filters or the keys.

    A cube cell's records are in the cell's `untimed_state`, but for the active ones whose
    state the time decides (past their expiry, leased, due): those are counted in the table,
    through partial indexes that hold only them, and moved to their state."""
    wanted: set[str] | None = None
    cube_filters = []
    for name, flt, value in filters:
        if name in STATE_FILTERS:
            given = {value} if name == "state" else set(value)
            wanted = given if wanted is None else wanted & given
        else:
            cube_filters.append((name, flt, value))
    if "state" not in columns and wanted is None:
        return counts.group_counts(channel.pk, filters, columns)
    keys = [column for column in columns if column != "state"]
    cell_columns = list(dict.fromkeys([*keys, "is_active", "resolution", "parked", "exhausted"]))
    cells = counts.group_counts(channel.pk, cube_filters, cell_columns)
    if cells is None:
        return None
    totals: Counter[tuple] = Counter()
    for *values, n in cells:
        cell = dict(zip(cell_columns, values, strict=True))
        state = untimed_state(
            is_active=cell["is_active"],
            resolution=cell["resolution"],
            parked=cell["parked"],
            exhausted=cell["exhausted"],
        )
        totals[(*(cell[key] for key in keys), state)] += n
    records = ListQuery(filters=tuple(cube_filters)).apply(failed_integration_list(channel=channel))
    timed_columns = list(dict.fromkeys([*keys, "parked", "exhausted"]))
    now = now or timezone.now()
    timed = timed_states_q(now=now, **dispatch_of(channel, now))
    for state, condition in timed.items():
        # Count("*"): the partial indexes do not hold the pk of every row.
        rows = (
            records.filter(condition).order_by().values_list(*timed_columns).annotate(n=Count("*"))
        )
        for *values, n in rows:
            row = dict(zip(timed_columns, values, strict=True))
            untimed = untimed_state(
                is_active=True, resolution="", parked=row["parked"], exhausted=row["exhausted"]
            )
            group = tuple(row[key] for key in keys)
            totals[(*group, untimed)] -= n
            totals[(*group, state)] += n
    found: Counter[tuple] = Counter()
    for (*values, state), n in totals.items():
        if wanted is None or state in wanted:
            by_key = {**dict(zip(keys, values, strict=True)), "state": state}
            found[tuple(by_key[column] for column in columns)] += n
    return [(*group, n) for group, n in found.items() if n]


def _group_rows(
    queryset, keys: list[str], columns: list[str], *, dispatch: dict[str, bool], now=None
) -> list[tuple]:
    """(*values, count) per group, counted in the table."""
    now = now or timezone.now()
    queryset = queryset.order_by()
    if "state" in keys:
        queryset = queryset.annotate(
            state=state_expression(
                now=now,
                has_endpoint=Value(dispatch["has_endpoint"]),
                held=Value(dispatch["held"]),
            )
        )
    if "expired" in keys:
        queryset = queryset.annotate(
            expired=Case(
                When(expiration_date__lt=now, then=Value(True)),
                default=Value(False),
                output_field=BooleanField(),
            )
        )
    rows = queryset.values_list(*columns).annotate(count=Count("pk"))
    return [tuple(row) for row in rows]


def content_type_name(content_type_id: int) -> str:
    content_type = ContentType.objects.get_for_id(content_type_id)
    return f"{content_type.app_label}.{content_type.model}"


def content_type_list(*, app_label: str | None = None, model: str | None = None):
    queryset = ContentType.objects.order_by("pk")
    if app_label:
        queryset = queryset.filter(app_label=app_label)
    if model:
        queryset = queryset.filter(model=model)
    return queryset
