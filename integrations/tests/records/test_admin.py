"""The admin's record form and actions write through the services, as the API does."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.db import models
from django.utils import timezone

from integrations.choices import Resolution
from integrations.models import Channel, FailedIntegration
from integrations.records.registry import WRITABLE

CHANGE_URL = "/admin/integrations/failedintegration/{}/change/"
ADD_URL = "/admin/integrations/failedintegration/add/"
LIST_URL = "/admin/integrations/failedintegration/"


@pytest.fixture
def admin_client(client, db):
    superuser = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root")
    client.force_login(superuser)
    return client


def form_data(record: FailedIntegration, **changes) -> dict:
    """The change form's fields as the browser posts them: the writable fields of the registry,
    each as the admin's widget posts it."""
    data: dict = {}
    for each in WRITABLE:
        field, value = each.model_field, getattr(record, each.model_field.attname)
        if isinstance(field, models.DateTimeField):
            data[f"{each.name}_0"] = value.strftime("%Y-%m-%d") if value else ""
            data[f"{each.name}_1"] = value.strftime("%H:%M:%S") if value else ""
        elif isinstance(field, models.BooleanField):
            data[each.name] = "on" if value else ""
        else:
            data[each.name] = "" if value is None else value
    data.update(changes)
    return {key: value for key, value in data.items() if value != ""}


def test_a_change_reschedules_the_record(admin_client, make_failed):
    record = make_failed(max_retry_count=5, retry_interval=60)
    response = admin_client.post(CHANGE_URL.format(record.pk), form_data(record, retry_count=2))
    assert response.status_code == 302, response.content
    record.refresh_from_db()
    assert record.retry_count == 2
    assert record.next_retry_at is not None  # scheduled by its policy
    response = admin_client.post(CHANGE_URL.format(record.pk), form_data(record, retry_count=5))
    record.refresh_from_db()
    assert record.retry_count == 5
    assert record.next_retry_at is None  # exhausted: no longer scheduled


def test_deactivating_resolves_the_record(admin_client, make_failed):
    record = make_failed(max_retry_count=5)
    response = admin_client.post(CHANGE_URL.format(record.pk), form_data(record, is_active=""))
    assert response.status_code == 302
    record.refresh_from_db()
    assert (record.is_active, record.resolution) == (False, Resolution.RESOLVED)
    assert record.resolved_at is not None and record.next_retry_at is None


def test_a_record_added_in_the_admin_supersedes_an_older_failure(admin_client, make_failed):
    older = make_failed(object_id=7)
    newer = FailedIntegration(
        channel=older.channel,
        content_type=older.content_type,
        object_id=7,
        reason_type="remote",
        version_date=older.version_date + dt.timedelta(days=1),
        max_retry_count=3,
    )
    response = admin_client.post(ADD_URL, {**form_data(newer), "channel": older.channel_id})
    assert response.status_code == 302, response.content
    older.refresh_from_db()
    assert (older.is_active, older.resolution) == (False, Resolution.SUPERSEDED)
    assert FailedIntegration.objects.filter(object_id=7, is_active=True).count() == 1


def test_the_api_rules_apply_in_the_form(admin_client, make_failed):
    record = make_failed()
    response = admin_client.post(CHANGE_URL.format(record.pk), form_data(record, retry_count=2**31))
    assert response.status_code == 200  # the form again, with the error
    assert "Ensure this value is less than or equal to 2147483647." in response.content.decode()
    record.refresh_from_db()
    assert record.retry_count == 1


def test_engine_fields_are_not_edited_by_hand(admin_client, make_failed):
    record = make_failed(max_retry_count=5)
    channel_id = record.channel_id
    moved = Channel.objects.create(name="Elsewhere")
    later = timezone.now() + dt.timedelta(days=30)
    data = form_data(record, object_id=99)
    data |= {
        "parked": "on",
        "lease_owner": "someone",
        "next_retry_at_0": later.strftime("%Y-%m-%d"),
        "next_retry_at_1": "00:00:00",
        "channel": moved.pk,
    }
    response = admin_client.post(CHANGE_URL.format(record.pk), data)
    assert response.status_code == 302
    record.refresh_from_db()
    assert record.object_id == 99
    assert (record.parked, record.lease_owner, record.channel_id) == (False, "", channel_id)
    assert record.next_retry_at is not None and record.next_retry_at < later


@pytest.mark.parametrize(
    ("action", "check"),
    [
        ("park", lambda r: r.parked and r.next_retry_at is None),
        ("deactivate", lambda r: not r.is_active and r.resolution == Resolution.RESOLVED),
        ("retry", lambda r: r.next_retry_at is not None and r.next_retry_at <= timezone.now()),
    ],
)
def test_admin_actions_are_the_operator_actions(admin_client, make_failed, action, check):
    chosen = make_failed(object_id=1, max_retry_count=5, retry_interval=3600)
    untouched = make_failed(object_id=2, max_retry_count=5, retry_interval=3600)
    before = FailedIntegration.objects.get(pk=untouched.pk)
    response = admin_client.post(
        LIST_URL, {"action": action, "_selected_action": [chosen.pk], "index": 0}
    )
    assert response.status_code == 302
    chosen.refresh_from_db()
    assert check(chosen)
    untouched.refresh_from_db()
    assert untouched.modified_date == before.modified_date


def test_the_admin_pauses_and_resumes_channels_and_shows_their_dispatch(admin_client, channel):
    from integrations.models import AuditEntry

    channel.retry_endpoint = "https://apps.example.com/retry"
    channel.save()
    changelist = "/admin/integrations/channel/"

    for action in ("pause_dispatch", "resume_dispatch"):
        answer = admin_client.post(
            changelist, {"action": action, "_selected_action": [channel.pk]}, follow=True
        )
        assert answer.status_code == 200
        channel.refresh_from_db()
        if action == "pause_dispatch":
            assert channel.dispatch_held_until is not None
            page = admin_client.get(f"{changelist}{channel.pk}/change/").content.decode()
            assert "paused; circuit closed" in page
            assert 'name="rate_limit"' in page and 'name="max_concurrency"' in page
    assert channel.dispatch_held_until is None
    assert list(AuditEntry.objects.order_by("pk").values_list("action", "source")) == [
        ("pause", "admin"),
        ("resume", "admin"),
    ]
