"""A failed integration as the API answers it, declared once: the regular views build it in
Python, the fast read path has PostgreSQL write the same JSON (`json_columns_sql`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

from common.fields import format_datetime_utc

from ..engine import record_state, state_sql
from ..models import FailedIntegration

# (name in the answer, model attribute / column, kind): the contract's fields in its order,
# then the read-only ones the service adds.
OUTPUT_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("pk", "id", "value"),
    ("channel", "channel_id", "value"),
    ("version_date", "version_date", "datetime"),
    ("reason_type", "reason_type", "value"),
    ("is_active", "is_active", "value"),
    ("content_type", "content_type_id", "value"),
    ("object_id", "object_id", "value"),
    ("expiration_date", "expiration_date", "datetime"),
    ("retry_count", "retry_count", "value"),
    ("max_retry_count", "max_retry_count", "value"),
    ("retry_interval", "retry_interval", "value"),
    ("integration_action", "integration_action_id", "value"),
    ("log_id", "log_id", "value"),
    ("created_date", "created_date", "datetime"),
    ("modified_date", "modified_date", "datetime"),
    ("state", "", "state"),
    ("next_retry_at", "next_retry_at", "datetime"),
    ("last_attempt_at", "last_attempt_at", "datetime"),
    ("last_error", "last_error", "value"),
    ("resolved_at", "resolved_at", "datetime"),
)


def failed_integration_data(
    failed: FailedIntegration, *, has_endpoint: bool, now: dt.datetime | None = None
) -> dict[str, Any]:
    """The JSON object of one failed integration (`has_endpoint`: its channel's)."""
    now = now or timezone.now()
    data: dict[str, Any] = {}
    for name, attribute, kind in OUTPUT_FIELDS:
        if kind == "state":
            data[name] = record_state(failed, has_endpoint=has_endpoint, now=now)
        elif kind == "datetime":
            data[name] = format_datetime_utc(getattr(failed, attribute))
        else:
            data[name] = getattr(failed, attribute)
    return data


def etag(pk: int, modified_date: dt.datetime) -> str:
    """A record's entity tag: it changes whenever the record does."""
    return f'"{pk}-{format_datetime_utc(modified_date)}"'


def json_columns_sql(alias: str, *, has_endpoint: str) -> str:
    """The same fields as SQL select-list items named as in the answer, for `row_to_json`."""
    utc = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    items = []
    for name, column, kind in OUTPUT_FIELDS:
        if kind == "state":
            expression = state_sql(alias, now="now()", has_endpoint=has_endpoint)
        elif kind == "datetime":
            expression = utc.format(f"{alias}.{column}")
        else:
            expression = f"{alias}.{column}"
        items.append(f'{expression} AS "{name}"')
    return ", ".join(items)
