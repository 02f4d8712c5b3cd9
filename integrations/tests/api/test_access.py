"""Nobody reaches a channel that is not theirs: every endpoint under a channel answers 404 for
a channel not granted (as for one that does not exist), and 403 to a write with a read-only
grant."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from accounts.services import token_create
from integrations.api.access import READ, WRITE
from integrations.api.urls import RECORD_ACTIONS, urlpatterns
from integrations.lifecycle.transitions import OPERATOR_ACTIONS
from integrations.models import ChannelGrant, FailedIntegration

pytestmark = pytest.mark.django_db

# The access each route and method needs: the one table the matrix below is held to. A route
# of the API without a row here fails `test_every_route_has_an_access_rule`.
RULES = {
    "content-type-list": {"get": "authenticated", "post": "global admin"},
    "failed-integration-list": {"get": READ, "post": WRITE},
    "failed-integration-bulk": {"post": WRITE},
    "failed-integration-stats": {"get": READ},
    "failed-integration-detail": {"get": READ, "put": WRITE, "patch": WRITE, "delete": WRITE},
    "failed-integration-attempts": {"get": READ},
    **{f"failed-integration-bulk-{action}": {"post": WRITE} for action in OPERATOR_ACTIONS},
    **{f"failed-integration-{action}": {"post": WRITE} for action in RECORD_ACTIONS},
}


def route_methods(pattern) -> set[str]:
    view = pattern.callback.view_class
    return {m for m in view.http_method_names if m not in ("options", "head") and hasattr(view, m)}


def test_every_route_has_an_access_rule():
    routes = {pattern.name: route_methods(pattern) for pattern in urlpatterns}

    assert {name: set(methods) for name, methods in RULES.items()} == routes


def channel_path(name: str) -> str:
    """The route's path under /api/v1/channel/{c}/failed_integrations/."""
    pattern = next(p for p in urlpatterns if p.name == name)
    route = str(pattern.pattern)
    return route.split("failed_integrations/", 1)[1].replace("<int:pk>", "{pk}")


# (method, path under /api/v1/channel/{c}/failed_integrations/, whether it writes)
ENDPOINTS = [
    (method, channel_path(name), access == WRITE)
    for name, methods in RULES.items()
    if name.startswith("failed-integration")
    for method, access in methods.items()
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
@pytest.mark.parametrize("on_every_channel", [False, True])
def test_a_viewer_reads_but_does_not_write(
    operator_client,
    user,
    channel,
    make_failed,
    product_type,
    method,
    path,
    writes,
    on_every_channel,
):
    ChannelGrant.objects.create(
        user=user, channel=None if on_every_channel else channel, role="viewer"
    )
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
@pytest.mark.parametrize(
    ("role", "on_every_channel"),
    [("operator", False), ("admin", False), ("operator", True), ("superuser", True)],
)
def test_an_operator_an_admin_and_a_superuser_do_everything(
    operator_client,
    user,
    channel,
    make_failed,
    product_type,
    method,
    path,
    writes,
    role,
    on_every_channel,
):
    if role == "superuser":
        user.is_superuser = True
        user.save()
    else:
        ChannelGrant.objects.create(
            user=user, channel=None if on_every_channel else channel, role=role
        )
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


@pytest.mark.parametrize(("method", "path", "writes"), ENDPOINTS)
def test_the_staff_flag_alone_opens_no_channel(
    operator_client, user, channel, make_failed, product_type, method, path, writes
):
    """`is_staff` opens the admin site only, within the user's Django permissions."""
    user.is_staff = True
    user.save()
    record = make_failed()

    response = call(operator_client, method, channel, path, record, product_type)

    assert response.status_code == 404
    assert FailedIntegration.objects.filter(pk=record.pk, is_active=True, parked=False).exists()


def test_a_role_on_every_channel_sees_every_channel(
    api_client, channel, other_channel, make_failed
):
    theirs = make_failed(channel=other_channel)

    response = api_client.get(
        f"/api/v1/channel/{other_channel.pk}/failed_integrations/{theirs.pk}/"
    )

    assert response.status_code == 200


def test_a_channel_role_outranks_nothing_elsewhere(
    operator_client, user, channel, other_channel, make_failed
):
    """An admin of one channel is nobody on another."""
    ChannelGrant.objects.create(user=user, channel=channel, role="admin")
    theirs = make_failed(channel=other_channel)

    response = operator_client.get(
        f"/api/v1/channel/{other_channel.pk}/failed_integrations/{theirs.pk}/"
    )

    assert response.status_code == 404


def test_grant_command(user, channel):
    out = io.StringIO()

    call_command("grant", user.username, str(channel.pk), "--read-only", stdout=out)
    assert ChannelGrant.objects.get(user=user, channel=channel).role == "viewer"
    call_command("grant", user.username, str(channel.pk), stdout=out)
    assert ChannelGrant.objects.get(user=user, channel=channel).role == "operator"
    call_command("grant", user.username, str(channel.pk), "--role", "admin", stdout=out)
    assert ChannelGrant.objects.get(user=user, channel=channel).role == "admin"
    call_command("grant", user.username, "--all-channels", "--role", "viewer", stdout=out)
    assert ChannelGrant.objects.get(user=user, channel=None).role == "viewer"
    call_command("grant", user.username, str(channel.pk), "--revoke", stdout=out)
    call_command("grant", user.username, "--all-channels", "--revoke", stdout=out)
    assert not ChannelGrant.objects.filter(user=user).exists()
