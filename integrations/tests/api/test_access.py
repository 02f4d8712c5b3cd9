"""Nobody reaches a channel that is not theirs: every endpoint under a channel answers 404 for
a channel not granted (as for one that does not exist), and 403 to a write with a read-only
grant."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from accounts.services import token_create
from integrations.models import ChannelGrant, FailedIntegration

pytestmark = pytest.mark.django_db

# (method, path under /api/v1/channel/{c}/failed_integrations/, whether it writes)
ENDPOINTS = [
    ("get", "", False),
    ("post", "", True),
    ("get", "{pk}/", False),
    ("put", "{pk}/", True),
    ("patch", "{pk}/", True),
    ("delete", "{pk}/", True),
    ("get", "stats/", False),
    ("post", "bulk/", True),
    ("get", "{pk}/attempts/", False),
    ("post", "retry/", True),
    ("post", "park/", True),
    ("post", "unpark/", True),
    ("post", "deactivate/", True),
    ("post", "{pk}/retry/", True),
    ("post", "{pk}/park/", True),
    ("post", "{pk}/unpark/", True),
]


@pytest.fixture
def operator_client(anonymous_client, user):
    _, key = token_create(user=user)
    anonymous_client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return anonymous_client


def body_for(method: str, path: str, product_type) -> object:
    item = {
        "version_date": "2025-06-27T08:38:26Z",
        "reason_type": "remote",
        "content_type": product_type.pk,
        "object_id": 5,
    }
    if path == "bulk/":
        return [item]
    if method in ("post", "put", "patch") and path in ("", "{pk}/"):
        return item
    return {}


def call(client, method, channel, path, record, product_type):
    url = f"/api/v1/channel/{channel.pk}/failed_integrations/" + path.format(pk=record.pk)
    return getattr(client, method)(url, body_for(method, path, product_type), format="json")


@pytest.mark.parametrize(("method", "path", "writes"), ENDPOINTS)
def test_fail_a_channel_not_granted_answers_as_one_that_does_not_exist(
    operator_client, channel, make_failed, product_type, method, path, writes
):
    record = make_failed()

    response = call(operator_client, method, channel, path, record, product_type)

    assert response.status_code == 404
    assert response.json() == {"detail": "Channel not found.", "code": "not_found"}
    assert FailedIntegration.objects.filter(pk=record.pk, is_active=True, parked=False).exists()


@pytest.mark.parametrize(("method", "path", "writes"), ENDPOINTS)
def test_a_read_only_grant_reads_but_does_not_write(
    operator_client, user, channel, make_failed, product_type, method, path, writes
):
    ChannelGrant.objects.create(user=user, channel=channel, can_write=False)
    record = make_failed()
    before = FailedIntegration.objects.count()

    response = call(operator_client, method, channel, path, record, product_type)

    if writes:
        assert response.status_code == 403
        assert response.json() == {
            "detail": "Your access to this channel is read-only.",
            "code": "permission_denied",
        }
        assert FailedIntegration.objects.count() == before
        assert FailedIntegration.objects.filter(pk=record.pk, is_active=True, parked=False).exists()
    else:
        assert response.status_code == 200


@pytest.mark.parametrize(("method", "path", "writes"), ENDPOINTS)
def test_a_read_write_grant_does_everything(
    operator_client, user, channel, make_failed, product_type, method, path, writes
):
    ChannelGrant.objects.create(user=user, channel=channel)
    record = make_failed(max_retry_count=3)

    response = call(operator_client, method, channel, path, record, product_type)

    assert response.status_code in (200, 201, 204), response.content


def test_a_grant_opens_only_its_channel(operator_client, user, channel, other_channel, make_failed):
    ChannelGrant.objects.create(user=user, channel=channel)
    mine, theirs = make_failed(), make_failed(channel=other_channel)

    assert (
        operator_client.get(
            f"/api/v1/channel/{channel.pk}/failed_integrations/{mine.pk}/"
        ).status_code
        == 200
    )
    assert (
        operator_client.get(
            f"/api/v1/channel/{other_channel.pk}/failed_integrations/{theirs.pk}/"
        ).status_code
        == 404
    )
    listed = operator_client.get(f"/api/v1/channel/{channel.pk}/failed_integrations/").json()
    assert [row["pk"] for row in listed["results"]] == [mine.pk]


def test_staff_see_every_channel(api_client, channel, other_channel, make_failed):
    theirs = make_failed(channel=other_channel)

    response = api_client.get(
        f"/api/v1/channel/{other_channel.pk}/failed_integrations/{theirs.pk}/"
    )

    assert response.status_code == 200


def test_grant_command(user, channel):
    out = io.StringIO()

    call_command("grant", user.username, str(channel.pk), "--read-only", stdout=out)
    assert ChannelGrant.objects.get(user=user, channel=channel).can_write is False
    call_command("grant", user.username, str(channel.pk), stdout=out)
    assert ChannelGrant.objects.get(user=user, channel=channel).can_write is True
    call_command("grant", user.username, str(channel.pk), "--revoke", stdout=out)
    assert not ChannelGrant.objects.filter(user=user).exists()
