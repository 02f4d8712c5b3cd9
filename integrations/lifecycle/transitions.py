"""The life cycle's writes that reports and updates make: a newer failure of an object
supersedes older active ones, and an update brings the life-cycle fields (resolution,
schedule) in line."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db.models import (
    BooleanField,
    Case,
    Count,
    DateTimeField,
    Expression,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Cast
from django.db.models.lookups import Exact

from integrations.choices import Resolution
from integrations.lifecycle.policies import next_retry_at_expression, policies_for
from integrations.models import FailedIntegration


def ended(resolution: str, *, now: dt.datetime) -> dict:
    """The fields of a record that is no longer retried, and why (an update's values): resolved
    by its channel app or a person, superseded by a newer failure, or expired."""
    return {
        "is_active": False,
        "resolution": resolution,
        "resolved_at": now,
        "next_retry_at": None,
        "retry_by_hand": False,
        "modified_date": now,
    }


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
        .update(**ended(Resolution.SUPERSEDED, now=now))
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


def after_update(values: dict[str, Expression], *, now: Expression) -> dict[str, Expression]:
    """The life-cycle fields that an update by a person or a channel app writes besides its own
    `values` (expressions, by field name), as expressions of the row as written: resolved when
    the update makes an active record inactive, unresolved when it makes an inactive one active,
    and scheduled again (`next_retry_at_expression`): an update is a reason to try again."""
    written = {"next_retry_at": next_retry_at_expression(values, now=now)}
    if "is_active" in values:
        active = Cast(values["is_active"], BooleanField())
        ends = Q(is_active=True) & Q(Exact(active, False))
        starts = Q(is_active=False) & Q(Exact(active, True))
        resolution = FailedIntegration._meta.get_field("resolution")
        written["resolution"] = Case(
            When(ends, then=Value(Resolution.RESOLVED)),
            When(starts, then=Value("")),
            default=F("resolution"),
            output_field=resolution,
        )
        written["resolved_at"] = Case(
            When(ends, then=now),
            When(starts, then=Value(None, output_field=DateTimeField())),
            default=F("resolved_at"),
            output_field=DateTimeField(),
        )
    return written


# --- operator actions --------------------------------------------------------------------------

OPERATOR_ACTIONS = ("retry", "park", "unpark", "deactivate")


def eligible_for(action: str, queryset: QuerySet[FailedIntegration]) -> QuerySet:
    """The records of `queryset` that `action` changes."""
    eligible = queryset.filter(is_active=True)
    if action in ("park", "unpark"):
        eligible = eligible.filter(parked=action == "unpark")
    return eligible


def act(
    action: str, eligible: QuerySet[FailedIntegration], *, now: dt.datetime, reset_count: bool
) -> int:
    """Applies an operator action to records `eligible_for` it; answers how many it changed.

    * retry: due now (unparked; `reset_count` sets retry_count to 0), even exhausted or mapping
      (one attempt, asked for by hand: `retry_by_hand`);
    * park: not retried on their own until unparked;
    * unpark: due now if their policy retries them (else left to a person);
    * deactivate: resolved (no longer retried).
    """
    if action == "retry":
        values = {
            "parked": False,
            "next_retry_at": now,
            "retry_by_hand": True,
            "modified_date": now,
        }
        if reset_count:
            values["retry_count"] = 0
        return eligible.update(**values)
    if action == "park":
        return eligible.update(
            parked=True, next_retry_at=None, retry_by_hand=False, modified_date=now
        )
    if action == "unpark":
        return _unpark(eligible, now=now)
    if action == "deactivate":
        return eligible.update(**ended(Resolution.RESOLVED, now=now))
    raise ValueError(f"unknown action {action!r}")


def _unpark(eligible: QuerySet[FailedIntegration], *, now: dt.datetime) -> int:
    """Unparks: due now where the policy retries on its own and retries remain."""
    channel_ids = set(eligible.values_list("channel_id", flat=True).distinct())
    affected = 0
    for channel_id in channel_ids:
        channel_policies = policies_for(channel_id)
        auto = [reason for reason, policy in channel_policies.items() if policy.auto_retry]
        in_channel = eligible.filter(channel_id=channel_id)
        affected += in_channel.filter(reason_type__in=auto, exhausted=False).update(
            parked=False, next_retry_at=now, modified_date=now
        )
        affected += in_channel.filter(parked=True).update(
            parked=False, next_retry_at=None, modified_date=now
        )
    return affected


def expire(ids: list[int], *, now: dt.datetime) -> int:
    """Ends the active records of `ids` as expired (their expiration date has passed)."""
    return FailedIntegration.objects.filter(pk__in=ids, is_active=True).update(
        **ended(Resolution.EXPIRED, now=now)
    )
