"""How records of one reason type are retried on one channel, and when the next attempt is:
the channel's own policy (`RetryPolicy`) or the default, the wait (fixed or exponential, with
jitter), and the schedule (`next_retry_at`) of a record."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import (
    BooleanField,
    Case,
    DateTimeField,
    Expression,
    F,
    FloatField,
    Func,
    Q,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce, Random
from django.db.models.lookups import Exact, GreaterThan, IsNull, LessThan
from django.utils import timezone

from common.database import Slot
from integrations.choices import Backoff, ReasonType
from integrations.models import FailedIntegration, RetryPolicy


@dataclass(frozen=True)
class Policy:
    auto_retry: bool
    backoff: str = Backoff.FIXED
    backoff_factor: float = 2.0
    max_delay: int = 24 * 3600
    jitter: float = 0.0

    # The settings a channel's own policy (`RetryPolicy`) sets.
    SETTINGS = ("auto_retry", "backoff", "backoff_factor", "max_delay", "jitter")

    @classmethod
    def of(cls, row: RetryPolicy) -> Policy:
        return cls(**{name: getattr(row, name) for name in cls.SETTINGS})


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
        policies[row.reason_type] = Policy.of(row)
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


class AddSeconds(Func):
    """A date-time plus a number of seconds (a float), on either database."""

    output_field = DateTimeField()
    arity = 2

    def as_sql(self, compiler, connection, **extra):
        (base, base_params), (seconds, seconds_params) = (
            compiler.compile(expression) for expression in self.source_expressions
        )
        params = [*base_params, *seconds_params]
        if connection.vendor == "postgresql":
            return f"({base} + make_interval(secs => {seconds}))", params
        # SQLite keeps date-times as text: Django's own function adds microseconds to them.
        return f"django_format_dtdelta('+', {base}, CAST(({seconds}) * 1000000 AS INTEGER))", params


def policy_slots() -> dict[str, Slot]:
    """The parameters of `next_retry_at_expression` that a channel's policies give
    (`policy_params`)."""
    return {
        f"{setting}:{reason}": Slot(f"{setting}:{reason}", field)
        for reason in ReasonType.values
        for setting, field in (("auto_retry", BooleanField()), ("jitter", FloatField()))
    }


def policy_params(channel_id: int) -> dict[str, object]:
    """The values of `policy_slots` for the channel's policies."""
    return {
        f"{setting}:{reason}": getattr(policy, setting)
        for reason, policy in policies_for(channel_id).items()
        for setting in ("auto_retry", "jitter")
    }


def next_retry_at_expression(values: dict[str, Expression], *, now: Expression) -> Case:
    """`next_retry_at` as the database computes it for a row updated by a person or a channel
    app: `values` are the update's (a field it does not write is the row's own, as written,
    under the row's lock), the policy is the channel's for the record's reason type, by
    `policy_slots`. The schedule of `next_retry_at` (without backoff: an update restarts the
    attempts' count of the wait), except that a record whose policy does not retry it on its
    own is due at once: an update is a reason to try again (a corrected mapping, say)."""

    def value(name: str) -> Expression:
        field = FailedIntegration._meta.get_field(name)
        return Cast(values[name], field) if name in values else F(name)

    slots = policy_slots()

    def per_reason(setting: str, output_field) -> Case:
        return Case(
            *(
                When(Exact(value("reason_type"), reason), then=slots[f"{setting}:{reason}"])
                for reason in ReasonType.values
            ),
            output_field=output_field,
        )

    expiration = value("expiration_date")
    may_be_due = (
        Q(Exact(value("is_active"), True))
        & Q(Exact(F("parked"), False))
        & Q(LessThan(value("retry_count"), value("max_retry_count")))
        & (Q(IsNull(expiration, True)) | Q(GreaterThan(expiration, now)))
    )
    base = Coalesce(F("last_attempt_at"), F("created_date"), now)
    jitter = per_reason("jitter", FloatField())
    delay = Cast(value("retry_interval"), FloatField()) * (Value(1.0) + Random() * jitter)
    return Case(
        When(
            may_be_due & Q(Exact(per_reason("auto_retry", BooleanField()), True)),
            then=AddSeconds(base, delay),
        ),
        When(may_be_due, then=now),
        default=Value(None, output_field=DateTimeField()),
        output_field=DateTimeField(),
    )


def schedule(records: Iterable[FailedIntegration], *, now: dt.datetime | None = None) -> None:
    """Sets `next_retry_at` on records (not saved), by their channel's policies."""
    now = now or timezone.now()
    cache: dict[int, dict[str, Policy]] = {}
    for record in records:
        if record.channel_id not in cache:
            cache[record.channel_id] = policies_for(record.channel_id)
        policy = cache[record.channel_id][record.reason_type]
        record.next_retry_at = next_retry_at(record, policy, now=now)
