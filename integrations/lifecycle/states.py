"""Where a record is in its retry life cycle (`State`): derived from its fields, the time and
whether its channel has a retry endpoint; never stored."""

from __future__ import annotations

import datetime as dt

from django.db.models import Q

from integrations.choices import Resolution, State
from integrations.models import FailedIntegration


def record_state(record: FailedIntegration, *, has_endpoint: bool, now: dt.datetime) -> str:
    """The record's state; `state_sql` and `state_q` say the same in SQL and as a filter."""
    if not record.is_active:
        if record.resolution in (Resolution.SUPERSEDED, Resolution.EXPIRED):
            return record.resolution
        return State.RESOLVED
    if record.expiration_date is not None and record.expiration_date <= now:
        return State.EXPIRED
    if record.parked:
        return State.PARKED
    if record.lease_expires_at is not None and record.lease_expires_at > now:
        return State.IN_PROGRESS
    if has_endpoint and record.next_retry_at is not None and record.next_retry_at <= now:
        return State.DUE
    if record.retry_count >= record.max_retry_count:
        return State.EXHAUSTED
    return State.PENDING


def state_sql(alias: str, *, now: str, has_endpoint: str) -> str:
    """The state as a SQL CASE expression; `now` and `has_endpoint` are SQL expressions."""
    a = alias
    return f"""CASE
        WHEN NOT {a}.is_active AND {a}.resolution IN ('superseded', 'expired')
            THEN {a}.resolution
        WHEN NOT {a}.is_active THEN 'resolved'
        WHEN {a}.expiration_date IS NOT NULL AND {a}.expiration_date <= {now} THEN 'expired'
        WHEN {a}.parked THEN 'parked'
        WHEN {a}.lease_expires_at IS NOT NULL AND {a}.lease_expires_at > {now}
            THEN 'in_progress'
        WHEN {has_endpoint} AND {a}.next_retry_at IS NOT NULL AND {a}.next_retry_at <= {now}
            THEN 'due'
        WHEN {a}.retry_count >= {a}.max_retry_count THEN 'exhausted'
        ELSE 'pending' END"""


def state_q(state: str, *, now: dt.datetime) -> Q:
    """The records in `state`, as a queryset filter."""
    inactive = Q(is_active=False)
    live = Q(is_active=True) & ~Q(expiration_date__lte=now)  # active and not past expiry
    in_progress = Q(lease_expires_at__gt=now)
    due = Q(next_retry_at__lte=now) & ~Q(channel__retry_endpoint="")
    exhausted = Q(exhausted=True)
    conditions = {
        State.SUPERSEDED: inactive & Q(resolution=Resolution.SUPERSEDED),
        State.RESOLVED: inactive & ~Q(resolution__in=[Resolution.SUPERSEDED, Resolution.EXPIRED]),
        State.EXPIRED: (inactive & Q(resolution=Resolution.EXPIRED))
        | (Q(is_active=True) & Q(expiration_date__lte=now)),
        State.PARKED: live & Q(parked=True),
        State.IN_PROGRESS: live & Q(parked=False) & in_progress,
        State.DUE: live & Q(parked=False) & ~in_progress & due,
        State.EXHAUSTED: live & Q(parked=False) & ~in_progress & ~due & exhausted,
        State.PENDING: live & Q(parked=False) & ~in_progress & ~due & ~exhausted,
    }
    return conditions[state]
