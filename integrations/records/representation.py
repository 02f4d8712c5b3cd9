"""A failed integration as the API answers it, declared once: the regular views build it in
Python, the fast read path has PostgreSQL write the same JSON (`json_columns_sql`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

from common.fields import format_datetime_utc
from integrations.lifecycle.states import dispatch_of, record_state, state_sql
from integrations.models import FailedIntegration
from integrations.records.registry import ANSWERED, DATETIME, STATE


def failed_integration_data(
    failed: FailedIntegration,
    *,
    has_endpoint: bool,
    held: bool = False,
    shows_errors: bool = True,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The JSON object of one failed integration (`has_endpoint`, `held`: its channel's, see
    lifecycle/states.py; `shows_errors`: whether the reader may see the channel app's error
    text)."""
    now = now or timezone.now()
    data: dict[str, Any] = {}
    for name, kind, target, operators_only in _ANSWERED:
        if operators_only and not shows_errors:
            data[name] = ""
        elif kind == STATE:
            data[name] = record_state(failed, has_endpoint=has_endpoint, held=held, now=now)
        elif kind == DATETIME:
            data[name] = format_datetime_utc(getattr(failed, target))
        else:
            data[name] = getattr(failed, target)
    return data


def failed_integrations_data(records, *, channel, shows_errors: bool) -> list[dict[str, Any]]:
    """Records of a channel as one answer lists them: their states as of one moment."""
    now = timezone.now()
    dispatch = dispatch_of(channel, now)
    return [
        failed_integration_data(record, **dispatch, shows_errors=shows_errors, now=now)
        for record in records
    ]


# The registry's answered fields as plain tuples: a bulk's answer reads them 20,000 times.
_ANSWERED = tuple(
    (field.name, field.kind, field.target, field.operators_only) for field in ANSWERED
)


def etag(pk: int, modified_date: dt.datetime | str) -> str:
    """A record's entity tag: it changes whenever the record does. `modified_date` as a
    datetime or as the answer writes it."""
    if isinstance(modified_date, dt.datetime):
        modified_date = format_datetime_utc(modified_date)
    return f'"{pk}-{modified_date}"'


def json_columns_sql(
    alias: str, *, has_endpoint: str, held: str, shows_errors: str = "TRUE"
) -> str:
    """The same fields as SQL select-list items named as in the answer, for `row_to_json`
    (`has_endpoint`, `held`, `shows_errors`: SQL booleans)."""
    utc = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    items = []
    for field in ANSWERED:
        if field.operators_only:
            expression = f"CASE WHEN {shows_errors} THEN {alias}.{field.column} ELSE '' END"
        elif field.kind == STATE:
            expression = state_sql(alias, now="now()", has_endpoint=has_endpoint, held=held)
        elif field.kind == DATETIME:
            expression = utc.format(f"{alias}.{field.column}")
        else:
            expression = f"{alias}.{field.column}"
        items.append(f'{expression} AS "{field.name}"')
    return ", ".join(items)


# A record's answer as PostgreSQL writes it (`row_to_json`), for the statements that answer
# what they read or write: of the row aliased `fi`, for the channel of a statement `allowed`
# (its has_endpoint, held and shows_errors).
JSON_COLUMNS = json_columns_sql(
    "fi",
    has_endpoint="(SELECT has_endpoint FROM allowed)",
    held="(SELECT held FROM allowed)",
    shows_errors="(SELECT shows_errors FROM allowed)",
)

# Whether the channel's dispatch is held (lifecycle/states.py, `dispatch_held`).
HELD_SQL = "coalesce(c.dispatch_held_until > now(), false)"

# The `allowed` of a statement that the regular view runs, which has checked the request's
# access to the channel itself; its parameters: whether the answer shows error text, the
# channel.
CHANNEL_SQL = f"""
    SELECT c.id, c.retry_endpoint <> '' AS has_endpoint, {HELD_SQL} AS held,
        %s::boolean AS shows_errors
    FROM integrations_channel c WHERE c.id = %s
"""  # noqa: S608 (constants; the values are parameters)
