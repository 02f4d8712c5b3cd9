"""The retry engine: when a failed integration is retried, how an attempt is made, and what
its outcome does to the record.

Life cycle (README, "The retry life cycle"):

* A record is *scheduled* (`next_retry_at`) when it is active, not parked, not exhausted, and
  its reason's policy retries automatically; the time is the last attempt (or creation) plus
  `retry_interval` seconds, stretched by exponential backoff and jitter when the policy says so.
* A worker *claims* scheduled records whose time has come, on channels with a retry endpoint,
  under a lease; it POSTs each to the channel app, signed. A 2xx *resolves* the record; anything
  else counts an attempt, keeps the error and schedules the next one, until `retry_count`
  reaches `max_retry_count`: *exhausted*, with an event sent once.
* A newer failure of the same object *supersedes* older active ones; records past their
  expiration date are *expired*; inactive records past the retention are purged.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Count, OuterRef, Q, Subquery
from django.utils import timezone

from .choices import Backoff, ReasonType, Resolution, State
from .models import FailedIntegration, RetryPolicy

logger = logging.getLogger("integrations.engine")

ERROR_TEXT_LIMIT = 2000


@dataclass(frozen=True)
class Policy:
    auto_retry: bool
    backoff: str = Backoff.FIXED
    backoff_factor: float = 2.0
    max_delay: int = 24 * 3600
    jitter: float = 0.0


DEFAULT_POLICIES = {
    ReasonType.MAPPING: Policy(auto_retry=False),
    ReasonType.REMOTE: Policy(auto_retry=True),
    ReasonType.CHANNEL_APP: Policy(auto_retry=True),
}


POLICY_CACHE_SECONDS = 5.0
_policy_cache: dict[int, tuple[float, dict[str, Policy]]] = {}


def policies_for(channel_id: int) -> dict[str, Policy]:
    """The channel's policy per reason type (its own where it has one, else the default).

    Kept for POLICY_CACHE_SECONDS per process: every report needs them, and they change
    rarely (a changed policy applies to records written after it)."""
    cached = _policy_cache.get(channel_id)
    if cached is not None and time.monotonic() - cached[0] < POLICY_CACHE_SECONDS:
        return cached[1]
    policies = _load_policies(channel_id)
    _policy_cache[channel_id] = (time.monotonic(), policies)
    return policies


def forget_policies() -> None:
    _policy_cache.clear()


def _load_policies(channel_id: int) -> dict[str, Policy]:
    policies = dict(DEFAULT_POLICIES)
    for row in RetryPolicy.objects.filter(channel_id=channel_id):
        policies[row.reason_type] = Policy(
            auto_retry=row.auto_retry,
            backoff=row.backoff,
            backoff_factor=row.backoff_factor,
            max_delay=row.max_delay,
            jitter=row.jitter,
        )
    return policies


def delay_seconds(record: FailedIntegration, policy: Policy, attempts: int, rng=random) -> float:
    """The wait before the next attempt, after `attempts` attempts by the engine."""
    delay = float(record.retry_interval)
    if policy.backoff == Backoff.EXPONENTIAL and attempts > 0:
        delay = min(delay * policy.backoff_factor ** min(attempts, 64), float(policy.max_delay))
    if policy.jitter > 0 and delay > 0:
        delay += rng.uniform(0, policy.jitter * delay)
    return delay


def next_retry_at(
    record: FailedIntegration, policy: Policy, *, now: dt.datetime, attempts: int = 0
) -> dt.datetime | None:
    """When the engine should next try `record` on its own, or None if it should not."""
    if not record.is_active or record.parked or not policy.auto_retry:
        return None
    if record.retry_count >= record.max_retry_count:
        return None
    if record.expiration_date is not None and record.expiration_date <= now:
        return None
    base = record.last_attempt_at or record.created_date or now
    return base + dt.timedelta(seconds=delay_seconds(record, policy, attempts))


def schedule(records: Iterable[FailedIntegration], *, now: dt.datetime | None = None) -> None:
    """Sets `next_retry_at` on records (not saved), by their channel's policies."""
    now = now or timezone.now()
    cache: dict[int, dict[str, Policy]] = {}
    for record in records:
        if record.channel_id not in cache:
            cache[record.channel_id] = policies_for(record.channel_id)
        policy = cache[record.channel_id][record.reason_type]
        record.next_retry_at = next_retry_at(record, policy, now=now)


# --- state -----------------------------------------------------------------------------------


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


def truncate(text: str, limit: int = ERROR_TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- writes the life cycle makes ---------------------------------------------------------------


def supersede(channel_id: int, records: Iterable[FailedIntegration], *, now: dt.datetime) -> int:
    """Leaves one active failure per object of the records: the newest version (the latest
    report among equal versions, so that a report sent twice counts once); deactivates the
    others as superseded. Answers how many."""
    object_ids = {r.object_id for r in records}
    active = FailedIntegration.objects.filter(
        channel_id=channel_id, is_active=True, object_id__in=object_ids
    )
    # Most reports are an object's only active failure: a read (no commit) tells, and the
    # update runs only when there is something to supersede. The objects with more than one
    # are counted rather than tested with exists(): its LIMIT 1 made PostgreSQL walk the whole
    # channel in (content type, object) order for a bulk's 1000 objects (370 ms at 160k rows,
    # against 2 ms through the object index).
    if not (
        active.values("content_type_id", "object_id")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
        .count()
    ):
        return 0
    newest = FailedIntegration.objects.filter(
        channel_id=OuterRef("channel_id"),
        content_type_id=OuterRef("content_type_id"),
        object_id=OuterRef("object_id"),
        is_active=True,
    ).order_by("-version_date", "-pk")
    older = Q(version_date__lt=Subquery(newest.values("version_date")[:1])) | Q(
        version_date=Subquery(newest.values("version_date")[:1]),
        pk__lt=Subquery(newest.values("pk")[:1]),
    )
    return (
        FailedIntegration.objects.filter(
            channel_id=channel_id, is_active=True, object_id__in=object_ids
        )
        .filter(older)
        .update(
            is_active=False,
            resolution=Resolution.SUPERSEDED,
            resolved_at=now,
            next_retry_at=None,
            modified_date=now,
        )
    )


LIFE_CYCLE_FIELDS = ("is_active", "resolution", "resolved_at", "next_retry_at", "modified_date")


def refresh_life_cycle(records: list[FailedIntegration]) -> None:
    """Reloads the life-cycle fields of records a statement may have changed."""
    rows = FailedIntegration.objects.filter(pk__in=[r.pk for r in records]).values(
        "pk", *LIFE_CYCLE_FIELDS
    )
    by_pk = {row.pop("pk"): row for row in rows}
    for record in records:
        for name, value in by_pk.get(record.pk, {}).items():
            setattr(record, name, value)


def after_update(record: FailedIntegration, *, was_active: bool) -> list[str]:
    """Brings the life-cycle fields in line with an update by a person or a channel app;
    answers the fields it changed. An update is a reason to try again: a mapping failure, which
    is not retried on its own, is retried at once after one."""
    now = timezone.now()
    changed = ["next_retry_at"]
    if was_active and not record.is_active:
        record.resolution, record.resolved_at = Resolution.RESOLVED, now
        changed += ["resolution", "resolved_at"]
    elif record.is_active and not was_active:
        record.resolution, record.resolved_at = "", None
        changed += ["resolution", "resolved_at"]
    policy = policies_for(record.channel_id)[record.reason_type]
    record.next_retry_at = next_retry_at(record, policy, now=now)
    if record.next_retry_at is None and not policy.auto_retry:
        record.next_retry_at = next_retry_at(record, Policy(auto_retry=True), now=now) and now
    return changed
