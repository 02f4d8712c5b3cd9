"""An update's life-cycle fields are derived by the database (`transitions.after_update`, one
UPDATE): they must be what the life cycle's Python rules give for the record as updated (the
schedule of `policies.next_retry_at`; due at once when the policy does not retry on its own;
resolved or unresolved when the update ends or restarts the record), on either database."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from integrations.choices import ReasonType, Resolution
from integrations.lifecycle import policies
from integrations.lifecycle.policies import Policy
from integrations.models import FailedIntegration, RetryPolicy
from integrations.records import services

pytestmark = pytest.mark.django_db

EXAMPLES = settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))

# Offsets from the update's moment, in seconds (some past, some to come).
offsets = st.integers(min_value=-3 * 86400, max_value=3 * 86400)
reasons = st.sampled_from(ReasonType.values)


def as_updated(record: FailedIntegration, values: dict) -> FailedIntegration:
    updated = FailedIntegration(
        **{
            f.attname: getattr(record, f.attname)
            for f in record._meta.concrete_fields
            if not f.generated
        }
    )
    for name, value in values.items():
        setattr(updated, name, value)
    return updated


def expected_schedule(record: FailedIntegration, policy: Policy, now: dt.datetime):
    """The Python rules: the policy's schedule, or at once when it does not retry on its own
    (an update is a reason to try again)."""
    due = policies.next_retry_at(record, policy, now=now)
    if due is None and not policy.auto_retry:
        due = policies.next_retry_at(record, Policy(auto_retry=True), now=now) and now
    return due


@EXAMPLES
@given(data=st.data())
def test_an_update_s_life_cycle_fields_are_the_python_rules_for_the_record_as_updated(
    channel, product_type, data
):
    now = timezone.now()
    auto = {
        reason: data.draw(st.booleans(), label=f"auto_retry {reason}")
        for reason in ReasonType.values
    }
    RetryPolicy.objects.filter(channel=channel).delete()
    for reason, auto_retry in auto.items():
        RetryPolicy.objects.create(channel=channel, reason_type=reason, auto_retry=auto_retry)
    policies.forget_policies()

    stored = {
        "is_active": data.draw(st.booleans(), label="is_active"),
        "parked": data.draw(st.booleans(), label="parked"),
        "reason_type": data.draw(reasons, label="reason_type"),
        "retry_count": data.draw(st.integers(0, 6), label="retry_count"),
        "max_retry_count": data.draw(st.integers(0, 6), label="max_retry_count"),
        "retry_interval": data.draw(st.integers(0, 7200), label="retry_interval"),
        "expiration_date": data.draw(
            st.none() | offsets.map(lambda s: now + dt.timedelta(seconds=s)), label="expiration"
        ),
        "last_attempt_at": data.draw(
            st.none() | st.integers(-86400, 0).map(lambda s: now + dt.timedelta(seconds=s)),
            label="last_attempt_at",
        ),
    }
    record = FailedIntegration.objects.create(
        channel=channel,
        content_type=product_type,
        object_id=1,
        version_date=now,
        resolution="" if stored["is_active"] else Resolution.SUPERSEDED,
        **stored,
    )
    FailedIntegration.objects.filter(pk=record.pk).update(
        created_date=now - dt.timedelta(seconds=data.draw(st.integers(0, 86400), label="age"))
    )
    record.refresh_from_db()
    candidates = {
        "is_active": st.booleans(),
        "reason_type": reasons,
        "retry_count": st.integers(0, 6),
        "max_retry_count": st.integers(0, 6),
        "retry_interval": st.integers(0, 7200),
        "expiration_date": st.none() | offsets.map(lambda s: now + dt.timedelta(seconds=s)),
    }
    names = data.draw(st.sets(st.sampled_from(sorted(candidates)), min_size=1), label="names")
    values = {name: data.draw(candidates[name], label=name) for name in sorted(names)}
    # The update's JSON: date-times as RFC 3339.
    payload = {
        name: value.isoformat() if isinstance(value, dt.datetime) else value
        for name, value in values.items()
    }
    note(f"payload: {payload}")

    before = timezone.now()
    updated = services.failed_integration_update(failed=record, payload=payload, partial=True)
    after = timezone.now()
    stored_now = FailedIntegration.objects.get(pk=record.pk)

    model = as_updated(record, values)
    moment = updated.modified_date
    assert before <= moment <= after
    assert stored_now.modified_date == moment
    policy = Policy(auto_retry=auto[model.reason_type])
    assert updated.next_retry_at == stored_now.next_retry_at
    assert stored_now.next_retry_at == expected_schedule(model, policy, moment)
    if record.is_active and not model.is_active:
        assert (stored_now.resolution, stored_now.resolved_at) == (Resolution.RESOLVED, moment)
    elif model.is_active and not record.is_active:
        assert (stored_now.resolution, stored_now.resolved_at) == ("", None)
    else:
        assert (stored_now.resolution, stored_now.resolved_at) == (
            record.resolution,
            record.resolved_at,
        )


def test_an_update_s_schedule_has_the_policy_s_jitter(channel, make_failed):
    RetryPolicy.objects.create(channel=channel, reason_type="remote", auto_retry=True, jitter=0.5)
    policies.forget_policies()
    record = make_failed(retry_interval=1000, max_retry_count=5)
    waits = set()
    for _ in range(20):
        updated = services.failed_integration_update(
            failed=record, payload={"retry_interval": 1000}, partial=True
        )
        base = updated.last_attempt_at or updated.created_date
        waits.add((updated.next_retry_at - base).total_seconds())

    assert all(1000 <= wait <= 1500 for wait in waits), waits
    assert len(waits) > 10  # drawn for each update
