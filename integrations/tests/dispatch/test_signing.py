"""A signing secret is write-only, and replacing it drops no attempt: the previous one signs
beside the new one for the overlap."""

from __future__ import annotations

import datetime as dt
import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.utils import timezone

from integrations.dispatch import signing
from integrations.models import Channel
from integrations.tests.lifecycle.test_engine import make_due, report, run_worker

pytestmark = pytest.mark.django_db

OLD, NEW = "old-secret-4b1d2f", "new-secret-9c3e7a"


@pytest.fixture
def signed_channel(channel, receiver):
    channel.retry_endpoint = receiver.url
    signing.rotate(channel, OLD)
    channel.save()
    return channel


@pytest.fixture
def superuser_client(client):
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "root-pass-1")
    client.force_login(admin)
    return client


def change_form(channel, **fields) -> dict:
    """The admin change form's fields as a browser posts them (inlines left empty)."""
    data = {
        "name": channel.name,
        "channel_type": channel.channel_type,
        "is_active": "on",
        "retry_endpoint": channel.retry_endpoint,
        "new_signing_secret": "",
        **fields,
    }
    for prefix in ("grants", "retry_policies"):
        data |= {f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"}
    return data


def signatures_received(receiver) -> list[str]:
    (received,) = receiver.received
    header = received.headers[signing.SIGNATURE_HEADER]
    timestamp = received.headers[signing.TIMESTAMP_HEADER]
    return [
        secret
        for secret in (OLD, NEW)
        if signing.valid_signature(header, secret, timestamp, received.body)
    ] + [f"{len(header.split(','))} signature(s)"]


def test_the_admin_never_shows_a_secret(superuser_client, signed_channel):
    url = f"/admin/integrations/channel/{signed_channel.pk}/change/"

    page = superuser_client.get(url).content.decode()
    superuser_client.post(url, change_form(signed_channel, new_signing_secret=NEW))
    after = superuser_client.get(url).content.decode()

    for html in (page, after):
        assert OLD not in html and NEW not in html
        assert 'name="new_signing_secret"' in html and 'type="password"' in html
    assert "the previous secret also signs until" in after


def test_view_only_staff_see_that_a_secret_is_set_not_what_it_is(client, signed_channel):
    viewer = get_user_model().objects.create_user("viewer", password="viewer-pass-1", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_channel"))
    client.force_login(viewer)

    response = client.get(f"/admin/integrations/channel/{signed_channel.pk}/change/")

    html = response.content.decode()
    assert response.status_code == 200
    assert OLD not in html
    assert "new_signing_secret" not in html
    assert re.search(r"set \(since", html)


def test_a_replaced_secret_signs_beside_the_new_one_for_the_overlap(
    superuser_client, signed_channel, product_type, receiver
):
    response = superuser_client.post(
        f"/admin/integrations/channel/{signed_channel.pk}/change/",
        change_form(signed_channel, new_signing_secret=NEW),
    )
    assert response.status_code == 302
    failed = report(signed_channel, product_type, retry_interval=600)
    make_due(failed)

    run_worker()

    # Both sign: an app still on the old secret and one already on the new accept it.
    assert signatures_received(receiver) == [OLD, NEW, "2 signature(s)"]


def test_after_the_overlap_only_the_new_secret_signs(signed_channel, product_type, receiver):
    signing.rotate(signed_channel, NEW, now=timezone.now() - dt.timedelta(hours=25))
    signed_channel.save()
    failed = report(signed_channel, product_type, retry_interval=600)
    make_due(failed)

    run_worker()

    assert signatures_received(receiver) == [NEW, "1 signature(s)"]


def test_a_blank_new_secret_keeps_the_current_one(superuser_client, signed_channel):
    superuser_client.post(
        f"/admin/integrations/channel/{signed_channel.pk}/change/",
        change_form(signed_channel, name="Renamed"),
    )

    signed_channel.refresh_from_db()
    assert (signed_channel.name, signed_channel.signing_secret) == ("Renamed", OLD)
    assert signing.signing_secrets(signed_channel) == (OLD,)


def test_removing_the_secret_stops_signing_at_once(superuser_client, signed_channel):
    superuser_client.post(
        f"/admin/integrations/channel/{signed_channel.pk}/change/",
        change_form(signed_channel, remove_signing_secret="on"),
    )

    signed_channel.refresh_from_db()
    assert signing.signing_secrets(signed_channel) == ()


def test_the_channel_command_rotates_and_never_prints_the_secret(signed_channel):
    out = io.StringIO()

    call_command("channel", str(signed_channel.pk), "--signing-secret", NEW, stdout=out)

    signed_channel.refresh_from_db()
    assert signing.signing_secrets(signed_channel) == (NEW, OLD)
    assert NEW not in out.getvalue() and OLD not in out.getvalue()
    assert Channel.objects.get(pk=signed_channel.pk).previous_secret_valid_until is not None
