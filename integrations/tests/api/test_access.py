"""Nobody reaches a channel that is not theirs, nor does more than their role gives: every
endpoint of a channel answers 404 for a channel not granted (as for one that does not exist),
and 403 to a request beyond the user's role; the matrix is every route of the URL
configuration by every role by every method, against one table (`RULES`)."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from accounts.services import token_create
from integrations.api.access import ADMIN, BEYOND_ROLE, READ, WRITE, allows
from integrations.api.urls import RECORD_ACTIONS, urlpatterns
from integrations.lifecycle.transitions import OPERATOR_ACTIONS
from integrations.models import BulkAction, Channel, ChannelGrant, FailedIntegration

ACCESS_OF = {"viewer": READ, "operator": WRITE, "admin": ADMIN}

pytestmark = pytest.mark.django_db

# The access each route and method needs: the one table the matrix below is held to. A route
# of the API without a row here fails `test_every_route_has_an_access_rule`.
RULES = {
    "audit-list": {"get": "authenticated"},
    "content-type-list": {"get": "authenticated", "post": "global admin"},
    "channel-list": {"get": "authenticated", "post": "global admin"},
    "channel-detail": {"get": READ, "patch": ADMIN},
    "channel-pause": {"post": WRITE},
    "channel-resume": {"post": WRITE},
    "channel-grant-list": {"get": ADMIN, "post": ADMIN},
    "channel-grant-detail": {"get": ADMIN, "patch": ADMIN, "delete": ADMIN},
    "failed-integration-list": {"get": READ, "post": WRITE},
    "failed-integration-bulk": {"post": WRITE},
    "failed-integration-stats": {"get": READ},
    "failed-integration-export": {"get": READ},
    "failed-integration-detail": {"get": READ, "put": WRITE, "patch": WRITE, "delete": WRITE},
    "failed-integration-attempts": {"get": READ},
    "operation-list": {"get": READ},
    "operation-detail": {"get": READ},
    **{f"failed-integration-bulk-{action}": {"post": WRITE} for action in OPERATOR_ACTIONS},
    **{f"failed-integration-{action}": {"post": WRITE} for action in RECORD_ACTIONS},
}


def route_methods(pattern) -> set[str]:
    view = pattern.callback.view_class
    return {m for m in view.http_method_names if m not in ("options", "head") and hasattr(view, m)}


def test_every_route_has_an_access_rule():
    routes = {pattern.name: route_methods(pattern) for pattern in urlpatterns}

    assert {name: set(methods) for name, methods in RULES.items()} == routes


def route_template(name: str) -> str:
    """The route's URL with `{channel}` and `{pk}` to fill in."""
    pattern = next(p for p in urlpatterns if p.name == name)
    route = str(pattern.pattern)
    return "/api/v1/" + route.replace("<int:channel_id>", "{channel}").replace("<int:pk>", "{pk}")


# (route name, method, the access it needs) of every route of one channel
ENDPOINTS = [
    (name, method, access)
    for name, methods in RULES.items()
    if "{channel}" in route_template(name)
    for method, access in methods.items()
]


@pytest.fixture
def operator_client(anonymous_client, user):
    _, key = token_create(user=user)
    anonymous_client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return anonymous_client


@pytest.fixture
def targets(channel, make_failed, django_user_model):
    """What the routes' `{pk}` name: a record, and another user's grant on the channel; and a
    user with no grant yet, for a new one."""
    colleague = django_user_model.objects.create_user(username="colleague")
    django_user_model.objects.create_user(username="newcomer")
    record = make_failed(max_retry_count=3)
    return {
        "record": record,
        "grant": ChannelGrant.objects.create(user=colleague, channel=channel, role="viewer"),
        "operation": BulkAction.objects.create(
            channel=channel, action="park", status="done", filters=f"pk__in={record.pk}", total=1
        ),
    }


def body_for(name: str, method: str, product_type) -> object:
    item = {
        "version_date": "2025-06-27T08:38:26Z",
        "reason_type": "remote",
        "content_type": product_type.pk,
        "object_id": 5,
    }
    if name == "failed-integration-bulk":
        return [item]
    if name in ("failed-integration-list", "failed-integration-detail") and method != "delete":
        return item
    if name == "channel-detail":
        return {"name": "Renamed"}
    if name == "channel-grant-list":
        return {"user": "newcomer", "role": "viewer"}
    if name == "channel-grant-detail":
        return {"role": "operator"}
    return {}


def call(client, name, method, channel, targets, product_type):
    url = route_template(name).format(channel=channel.pk, pk=targets[target_of(name)].pk)
    if name.startswith("failed-integration-bulk-"):
        url += f"?pk__in={targets['record'].pk}"  # a bulk action names its records
    return getattr(client, method)(url, body_for(name, method, product_type), format="json")


def target_of(name: str) -> str:
    """What the route's `{pk}` names."""
    if name.startswith("channel-grant"):
        return "grant"
    return "operation" if name.startswith("operation") else "record"


def assert_nothing_changed(channel, targets):
    assert FailedIntegration.objects.filter(
        pk=targets["record"].pk, is_active=True, parked=False, retry_count=1
    ).exists()
    assert Channel.objects.get(pk=channel.pk).name == channel.name
    assert set(ChannelGrant.objects.values_list("user__username", "role")) >= {
        ("colleague", "viewer")
    }
    assert not ChannelGrant.objects.filter(user__username="newcomer").exists()


@pytest.mark.parametrize(("name", "method", "access"), ENDPOINTS)
def test_fail_a_channel_not_granted_answers_as_one_that_does_not_exist(
    operator_client, channel, targets, product_type, name, method, access
):
    before = FailedIntegration.objects.count()

    response = call(operator_client, name, method, channel, targets, product_type)

    assert response.status_code == 404
    assert response.json() == {"detail": "Channel not found.", "code": "not_found"}
    assert FailedIntegration.objects.count() == before
    assert_nothing_changed(channel, targets)


def expected_answer(role_gives: str, needed: str) -> str | None:
    """The 403 message when `needed` is beyond the role, else None."""
    return None if allows(role_gives, needed) else BEYOND_ROLE[needed]


@pytest.mark.parametrize(("name", "method", "access"), ENDPOINTS)
@pytest.mark.parametrize(
    ("role", "on_every_channel"),
    [
        ("viewer", False),
        ("viewer", True),
        ("operator", False),
        ("operator", True),
        ("admin", False),
        ("admin", True),
        ("superuser", True),
    ],
)
def test_each_role_does_what_it_gives_and_nothing_more(
    operator_client,
    user,
    channel,
    targets,
    product_type,
    name,
    method,
    access,
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
    before = FailedIntegration.objects.count()
    gives = ADMIN if role == "superuser" else ACCESS_OF[role]

    response = call(operator_client, name, method, channel, targets, product_type)

    refused = expected_answer(gives, access)
    if refused:
        assert response.status_code == 403
        assert response.json() == {"detail": refused, "code": "permission_denied"}
        assert FailedIntegration.objects.count() == before
        assert_nothing_changed(channel, targets)
    else:
        assert response.status_code in (200, 201, 204), response.content


@pytest.mark.parametrize(("name", "method", "access"), ENDPOINTS)
def test_the_staff_flag_alone_opens_no_channel(
    operator_client, user, channel, targets, product_type, name, method, access
):
    """`is_staff` opens the admin site only, within the user's Django permissions."""
    user.is_staff = True
    user.save()

    response = call(operator_client, name, method, channel, targets, product_type)

    assert response.status_code == 404
    assert_nothing_changed(channel, targets)


@pytest.mark.parametrize("name", ["content-type-list", "channel-list"])
@pytest.mark.parametrize(
    ("role", "adds"),
    [(None, False), ("viewer", False), ("operator", False), ("admin", True), ("superuser", True)],
)
def test_only_an_admin_of_every_channel_adds_content_types_and_channels(
    operator_client, user, name, role, adds
):
    if role == "superuser":
        user.is_superuser = True
        user.save()
    elif role is not None:
        ChannelGrant.objects.create(user=user, channel=None, role=role)
    body = {"app_label": "shop", "model": "basket", "name": "Marketplace C"}
    body = {k: v for k, v in body.items() if (k == "name") == (name == "channel-list")}
    url = route_template(name)

    listed = operator_client.get(url)
    added = operator_client.post(url, body, format="json")

    assert listed.status_code == 200
    assert added.status_code == (201 if adds else 403), added.content
    assert Channel.objects.filter(name="Marketplace C").exists() == (
        adds and name == "channel-list"
    )


@pytest.mark.parametrize("name", ["content-type-list", "channel-list"])
def test_anonymous_requests_answer_401(anonymous_client, name):
    for method in RULES[name]:
        response = getattr(anonymous_client, method)(route_template(name), {}, format="json")
        assert response.status_code == 401


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
