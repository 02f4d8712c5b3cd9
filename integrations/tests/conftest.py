"""Fixtures of the integrations tests."""

from __future__ import annotations

import datetime as dt

import pytest

from integrations.models import FailedIntegration, IntegrationAction
from integrations.tests.receiver import Receiver


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


@pytest.fixture
def records(channel, other_channel, product_type, order_type):
    """Four records of `channel` (a, b, c, d) and one of another channel that no filter of
    `channel`'s list may answer."""
    action = IntegrationAction.objects.create(
        channel=channel, content_type=product_type, object_id=1
    )
    rows = {
        "a": dict(
            reason_type="mapping",
            is_active=True,
            content_type=product_type,
            object_id=1,
            integration_action=action,
            log_id=10,
            version_date=at("2025-01-01"),
            expiration_date=None,
            retry_count=0,
            max_retry_count=1,
            retry_interval=0,
            next_retry_at=at("2025-04-01"),
            last_attempt_at=at("2025-03-10"),
            created="2025-02-01",
            modified="2025-03-01",
        ),
        "b": dict(
            reason_type="remote",
            is_active=True,
            content_type=product_type,
            object_id=2,
            log_id=20,
            version_date=at("2025-01-02"),
            expiration_date=at("2020-01-01"),
            retry_count=1,
            max_retry_count=1,
            retry_interval=60,
            created="2025-02-02",
            modified="2025-03-02",
        ),
        "c": dict(
            reason_type="remote",
            is_active=False,
            content_type=order_type,
            object_id=3,
            version_date=at("2025-01-03"),
            expiration_date=at("2999-01-01"),
            retry_count=2,
            max_retry_count=5,
            retry_interval=300,
            resolved_at=at("2025-05-01"),
            created="2025-02-03",
            modified="2025-03-03",
        ),
        "d": dict(
            reason_type="channel_app",
            is_active=True,
            content_type=order_type,
            object_id=1,
            version_date=at("2025-01-04"),
            expiration_date=at("2021-01-01"),
            retry_count=5,
            max_retry_count=3,
            retry_interval=3600,
            parked=True,
            created="2025-02-04",
            modified="2025-03-04",
        ),
    }
    made = {}
    for name, values in rows.items():
        created, modified = values.pop("created"), values.pop("modified")
        record = FailedIntegration.objects.create(channel=channel, **values)
        FailedIntegration.objects.filter(pk=record.pk).update(
            created_date=at(created), modified_date=at(modified)
        )
        made[name] = record
    FailedIntegration.objects.create(
        channel=other_channel,
        reason_type="mapping",
        content_type=product_type,
        object_id=1,
        version_date=at("2025-01-01"),
    )
    made["action"] = action
    return made


@pytest.fixture
def receiver():
    """A channel app's retry endpoint on 127.0.0.1, answering as the test tells it."""
    running = Receiver().start()
    yield running
    running.stop()
