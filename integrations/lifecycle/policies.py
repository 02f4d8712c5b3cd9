"""How records of one reason type are retried on one channel, and when the next attempt is:
the channel's own policy (`RetryPolicy`) or the default, the wait (fixed or exponential, with
jitter), and the schedule (`next_retry_at`) of a record."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass

from django.utils import timezone

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


def schedule(records: Iterable[FailedIntegration], *, now: dt.datetime | None = None) -> None:
    """Sets `next_retry_at` on records (not saved), by their channel's policies."""
    now = now or timezone.now()
    cache: dict[int, dict[str, Policy]] = {}
    for record in records:
        if record.channel_id not in cache:
            cache[record.channel_id] = policies_for(record.channel_id)
        policy = cache[record.channel_id][record.reason_type]
        record.next_retry_at = next_retry_at(record, policy, now=now)
