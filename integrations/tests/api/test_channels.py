"""A channel's admins manage its settings and its grants through the API: a secret is never
read back, every setting is checked by the admin site's rules, a misspelt key changes nothing,
and nobody changes their own role."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth import get_user_model

from accounts.services import token_create
from integrations.lifecycle.policies import policies_for
from integrations.models import AuditEntry, Channel, ChannelGrant, FailedIntegration, RetryPolicy

pytestmark = pytest.mark.django_db

SECRET = "channel-secret-5e1f0c9a"


@pytest.fixture
def client_of(anonymous_client):
    """A client logged in as `user` with `role` on `channel` (None: no grant)."""

    def make(user, channel=None, role=None):
        if role is not None:
            ChannelGrant.objects.create(user=user, channel=channel, role=role)
        _, key = token_create(user=user)
        anonymous_client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        return anonymous_client

    return make


@pytest.fixture
def admin_client(client_of, user, channel):
    return client_of(user, channel, "admin")


def url(channel, rest=""):
    return f"/api/v1/channels/{channel.pk}/{rest}"


def test_the_channel_list_shows_what_the_user_may_see_and_the_role_on_each(
    client_of, user, channel, other_channel
):
    Channel.objects.create(name="Marketplace C")
    client = client_of(user, channel, "viewer")
    ChannelGrant.objects.create(user=user, channel=other_channel, role="admin")

    listed = client.get("/api/v1/channels/").json()

    assert listed["count"] == 2
    assert [(row["id"], row["role"]) for row in listed["results"]] == [
        (channel.pk, "viewer"),
        (other_channel.pk, "admin"),
    ]


def test_a_role_on_every_channel_outranks_a_smaller_one_on_one(
    client_of, user, channel, other_channel
):
    client = client_of(user, None, "operator")
    ChannelGrant.objects.create(user=user, channel=channel, role="viewer")

    listed = client.get("/api/v1/channels/").json()["results"]

    assert [(row["id"], row["role"]) for row in listed] == [
        (channel.pk, "operator"),
        (other_channel.pk, "operator"),
    ]


def test_the_settings_never_show_the_secret(admin_client, channel):
    admin_client.patch(url(channel), {"signing_secret": SECRET}, format="json")

    response = admin_client.get(url(channel))

    assert SECRET not in response.content.decode()
    body = response.json()
    assert body["signing_secret"]["set"] is True
    assert body["signing_secret"]["rotated_at"] is not None
    assert body["signing_secret"]["previous_signs_until"] is None
    assert body["role"] == "admin"
    assert body["retry_policies"]["mapping"] == {
        "auto_retry": False,
        "backoff": "fixed",
        "backoff_factor": 2.0,
        "max_delay": 86400,
        "jitter": 0.0,
        "default": True,
    }


def test_a_new_secret_leaves_the_previous_one_signing_for_the_overlap(admin_client, channel):
    channel.signing_secret = "the-first-secret-0001"
    channel.save()

    body = admin_client.patch(url(channel), {"signing_secret": SECRET}, format="json").json()

    channel.refresh_from_db()
    assert (channel.signing_secret, channel.previous_signing_secret) == (
        SECRET,
        "the-first-secret-0001",
    )
    assert body["signing_secret"]["previous_signs_until"] is not None
    assert "the-first-secret-0001" not in str(body)


def test_a_null_secret_stops_signing(admin_client, channel):
    channel.signing_secret = SECRET
    channel.save()

    body = admin_client.patch(url(channel), {"signing_secret": None}, format="json").json()

    channel.refresh_from_db()
    assert channel.signing_secret == "" and body["signing_secret"]["set"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"signing_secret": "short"}, "signing_secret"),
        ({"retry_endpoint": "ftp://example.com/retry"}, "retry_endpoint"),
        ({"retry_endpoint": "https://svc:pass@example.com/retry"}, "retry_endpoint"),
        ({"retry_endpoint": "http://169.254.169.254/latest/meta-data"}, "retry_endpoint"),
        ({"retry_endpoint": "http://10.0.0.8:8080/retry"}, "retry_endpoint"),
        ({"retry_endpoint": "https://example.com:99999/"}, "retry_endpoint"),
        ({"channel_type": "fax"}, "channel_type"),
        ({"name": ""}, "name"),
        ({"is_active": "perhaps"}, "is_active"),
        ({"retry_endpont": "https://example.com/retry"}, "retry_endpont"),
        ({"id": 99}, "id"),
        ({"retry_policies": []}, "retry_policies"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_concurrency": "many"}, "max_concurrency"),
        ({"rate_limit": -1}, "rate_limit"),
        ({"rate_limit": 100000}, "rate_limit"),
        ({"rate_limit": True}, "rate_limit"),
        ({"max_concurrency": True}, "max_concurrency"),
        ({"dispatch": {"state": "sending"}}, "dispatch"),
    ],
)
def test_a_bad_setting_answers_400_naming_it_and_changes_nothing(
    admin_client, channel, body, field
):
    before = Channel.objects.filter(pk=channel.pk).values().get()

    response = admin_client.patch(url(channel), {"name": "Renamed", **body}, format="json")

    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert Channel.objects.filter(pk=channel.pk).values().get() == before


def test_a_body_that_is_not_an_object_answers_400(admin_client, channel):
    response = admin_client.patch(url(channel), [{"name": "Renamed"}], format="json")

    assert response.status_code == 400
    assert "non_field_errors" in response.json()


def test_settings_change_and_the_change_is_logged_without_the_secret(admin_client, channel, caplog):
    with caplog.at_level(logging.INFO, logger="integrations.channels.services"):
        response = admin_client.patch(
            url(channel),
            {
                "name": "Renamed",
                "retry_endpoint": "https://apps.example.com/retry",
                "signing_secret": SECRET,
            },
            format="json",
        )

    assert response.status_code == 200
    assert response.json()["name"] == "Renamed"
    channel.refresh_from_db()
    assert (channel.name, channel.retry_endpoint) == ("Renamed", "https://apps.example.com/retry")
    assert "name, retry_endpoint, signing_secret" in caplog.text
    assert "by operator" in caplog.text
    assert SECRET not in caplog.text


def test_a_policy_changes_only_what_is_given_and_null_restores_the_default(admin_client, channel):
    policies_for(channel.pk)  # cached, as a running service has it

    changed = admin_client.patch(
        url(channel),
        {"retry_policies": {"remote": {"backoff": "exponential", "jitter": 0.25}}},
        format="json",
    ).json()["retry_policies"]

    assert changed["remote"] == {
        "auto_retry": True,
        "backoff": "exponential",
        "backoff_factor": 2.0,
        "max_delay": 86400,
        "jitter": 0.25,
        "default": False,
    }
    assert changed["mapping"]["default"] is True
    assert policies_for(channel.pk)["remote"].backoff == "exponential"

    again = admin_client.patch(
        url(channel), {"retry_policies": {"remote": {"max_delay": 600}}}, format="json"
    ).json()["retry_policies"]["remote"]
    assert (again["backoff"], again["max_delay"]) == ("exponential", 600)

    restored = admin_client.patch(
        url(channel), {"retry_policies": {"remote": None}}, format="json"
    ).json()["retry_policies"]["remote"]
    assert restored["default"] is True and restored["backoff"] == "fixed"
    assert not RetryPolicy.objects.filter(channel=channel).exists()


@pytest.mark.parametrize(
    ("policies", "where"),
    [
        ({"remot": {"jitter": 0.1}}, ["remot"]),
        ({"remote": {"jitter": 1.5}}, ["remote", "jitter"]),
        ({"remote": {"backoff_factor": 0.5}}, ["remote", "backoff_factor"]),
        ({"remote": {"backoff_factor": True}}, ["remote", "backoff_factor"]),
        ({"remote": {"jitter": False}}, ["remote", "jitter"]),
        ({"remote": {"max_delay": 10**9}}, ["remote", "max_delay"]),
        ({"remote": {"backoff": "linear"}}, ["remote", "backoff"]),
        ({"remote": {"retries": 3}}, ["remote", "retries"]),
        ({"remote": "fast"}, ["remote", "non_field_errors"]),
    ],
)
def test_a_bad_policy_answers_400_naming_where(admin_client, channel, policies, where):
    response = admin_client.patch(
        url(channel), {"name": "Renamed", "retry_policies": policies}, format="json"
    )

    assert response.status_code == 400
    errors = response.json()["retry_policies"]
    for key in where:
        errors = errors[key]
    assert errors
    assert not RetryPolicy.objects.exists()
    assert Channel.objects.get(pk=channel.pk).name == channel.name


def test_an_admin_of_every_channel_adds_a_channel(client_of, user):
    client = client_of(user, None, "admin")

    response = client.post(
        "/api/v1/channels/",
        {
            "name": "Marketplace C",
            "retry_endpoint": "https://apps.example.com/retry",
            "signing_secret": SECRET,
            "retry_policies": {"mapping": {"auto_retry": True}},
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    channel = Channel.objects.get(pk=body["id"])
    assert (channel.name, channel.signing_secret) == ("Marketplace C", SECRET)
    assert body["retry_policies"]["mapping"]["auto_retry"] is True
    assert body["role"] == "admin"


def test_a_channel_needs_a_name(client_of, user):
    client = client_of(user, None, "admin")

    response = client.post("/api/v1/channels/", {}, format="json")

    assert response.status_code == 400 and "name" in response.json()
    assert not Channel.objects.exists()


# --- grants


@pytest.fixture
def colleague(django_user_model):
    return django_user_model.objects.create_user(username="colleague")


def test_the_grants_list_the_channels_and_the_roles_on_every_channel(
    admin_client, user, channel, other_channel, colleague, django_user_model
):
    ChannelGrant.objects.create(user=colleague, channel=None, role="viewer")
    elsewhere = django_user_model.objects.create_user(username="elsewhere")
    ChannelGrant.objects.create(user=elsewhere, channel=other_channel, role="admin")

    listed = admin_client.get(url(channel, "grants/")).json()

    assert [(row["user"], row["channel"], row["role"]) for row in listed["results"]] == [
        ("operator", channel.pk, "admin"),
        ("colleague", None, "viewer"),
    ]


def test_an_admin_gives_changes_and_removes_a_role(admin_client, channel, colleague):
    created = admin_client.post(
        url(channel, "grants/"), {"user": "colleague", "role": "viewer"}, format="json"
    )
    assert created.status_code == 201
    grant_url = url(channel, f"grants/{created.json()['id']}/")

    changed = admin_client.patch(grant_url, {"role": "operator"}, format="json")
    assert changed.json()["role"] == "operator"
    assert ChannelGrant.objects.get(user=colleague, channel=channel).role == "operator"

    assert admin_client.delete(grant_url).status_code == 204
    assert not ChannelGrant.objects.filter(user=colleague).exists()
    assert admin_client.get(grant_url).status_code == 404


def test_a_second_grant_for_the_same_user_answers_409(admin_client, channel, colleague):
    grant = ChannelGrant.objects.create(user=colleague, channel=channel, role="viewer")

    response = admin_client.post(
        url(channel, "grants/"), {"user": "colleague", "role": "admin"}, format="json"
    )

    assert response.status_code == 409
    assert f"grant {grant.pk}" in response.json()["detail"]
    assert ChannelGrant.objects.get(pk=grant.pk).role == "viewer"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user": "nobody", "role": "viewer"}, "user"),
        ({"user": "colleague", "role": "owner"}, "role"),
        ({"user": "colleague"}, "role"),
        ({"user": "colleague", "role": "viewer", "channel": None}, "channel"),
    ],
)
def test_a_bad_grant_answers_400_naming_the_field(admin_client, channel, colleague, body, field):
    response = admin_client.post(url(channel, "grants/"), body, format="json")

    assert response.status_code == 400 and field in response.json()
    assert not ChannelGrant.objects.filter(user=colleague).exists()


def test_nobody_changes_their_own_role(admin_client, user, channel):
    own = ChannelGrant.objects.get(user=user, channel=channel)

    demoted = admin_client.patch(
        url(channel, f"grants/{own.pk}/"), {"role": "viewer"}, format="json"
    )
    removed = admin_client.delete(url(channel, f"grants/{own.pk}/"))

    assert (demoted.status_code, removed.status_code) == (403, 403)
    assert "your own role" in demoted.json()["detail"]
    assert ChannelGrant.objects.get(pk=own.pk).role == "admin"


def test_a_role_on_every_channel_is_not_changed_from_one_channel(admin_client, channel, colleague):
    everywhere = ChannelGrant.objects.create(user=colleague, channel=None, role="operator")

    response = admin_client.delete(url(channel, f"grants/{everywhere.pk}/"))

    assert response.status_code == 403
    assert "every channel" in response.json()["detail"]
    assert ChannelGrant.objects.filter(pk=everywhere.pk).exists()


def test_another_channels_grant_answers_as_missing(admin_client, channel, other_channel, colleague):
    theirs = ChannelGrant.objects.create(user=colleague, channel=other_channel, role="viewer")

    response = admin_client.patch(
        url(channel, f"grants/{theirs.pk}/"), {"role": "admin"}, format="json"
    )

    assert response.status_code == 404
    assert response.json() == {"detail": "Grant not found.", "code": "not_found"}
    assert ChannelGrant.objects.get(pk=theirs.pk).role == "viewer"


def test_a_role_given_opens_the_channel_at_once(admin_client, channel, colleague, anonymous_client):
    admin_client.post(
        url(channel, "grants/"), {"user": "colleague", "role": "viewer"}, format="json"
    )
    _, key = token_create(user=get_user_model().objects.get(username="colleague"))
    anonymous_client.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    response = anonymous_client.get(f"/api/v1/channel/{channel.pk}/failed_integrations/")

    assert response.status_code == 200


def test_the_rate_limit_and_the_concurrency_cap_are_settings(admin_client, channel):
    changed = admin_client.patch(
        url(channel), {"max_concurrency": 8, "rate_limit": 2.5}, format="json"
    ).json()
    assert (changed["max_concurrency"], changed["rate_limit"]) == (8, 2.5)

    cleared = admin_client.patch(
        url(channel), {"max_concurrency": None, "rate_limit": None}, format="json"
    ).json()
    assert (cleared["max_concurrency"], cleared["rate_limit"]) == (None, None)


def test_the_channel_shows_its_dispatch_health(admin_client, channel, make_failed):
    channel.retry_endpoint = "https://apps.example.com/retry"
    channel.rate_limit = 2
    channel.save()
    waiting = [make_failed(object_id=n, max_retry_count=5) for n in range(4)]
    FailedIntegration.objects.filter(pk__in=[r.pk for r in waiting]).update(
        next_retry_at="2020-01-01T00:00:00Z"
    )

    sending = admin_client.get(url(channel)).json()["dispatch"]
    paused = admin_client.post(url(channel, "pause/")).json()["dispatch"]
    listed = admin_client.get("/api/v1/channels/").json()["results"][0]["dispatch"]
    resumed = admin_client.post(url(channel, "resume/"), {}, format="json").json()["dispatch"]

    assert sending["state"] == "sending" and sending["circuit"] == "closed"
    assert (sending["due"], sending["held"], sending["in_flight"]) == (4, 0, 0)
    assert sending["rate"] == 2 and sending["drain_seconds_estimate"] == 2.0
    assert sending["oldest_due_age_seconds"] > 3600
    assert paused["state"] == "paused" and paused["paused_by"] == "operator"
    assert (paused["due"], paused["held"]) == (0, 4)
    moving = "oldest_due_age_seconds"
    assert {**listed, moving: 0} == {**paused, moving: 0}
    assert resumed["state"] == "sending" and resumed["paused_at"] is None
    # Resumed: the backlog drains at the rate limit (a token at a time, never a burst).
    assert resumed["rate"] == 2 and resumed["learned_rate"] is None
    entries = (
        AuditEntry.objects.filter(channel=channel).order_by("pk").values_list("action", "source")
    )
    assert list(entries) == [("pause", "api"), ("resume", "api")]


def test_a_viewer_may_not_pause_and_a_body_is_refused(client_of, user, channel):
    viewer = client_of(user, channel, "viewer")
    assert viewer.post(url(channel, "pause/")).status_code == 403
    ChannelGrant.objects.filter(user=user).update(role="operator")
    refused = viewer.post(url(channel, "pause/"), {"until": "tomorrow"}, format="json")
    assert refused.status_code == 400 and "body" in refused.json()
    assert Channel.objects.get(pk=channel.pk).dispatch_held_until is None


def test_the_channel_command_pauses_resumes_and_limits(channel):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command(
        "channel",
        str(channel.pk),
        "--pause",
        "--rate-limit",
        "3",
        "--max-concurrency",
        "2",
        stdout=out,
    )
    channel.refresh_from_db()
    assert (channel.rate_limit, channel.max_concurrency) == (3.0, 2)
    assert channel.dispatch_held_until is not None
    assert "dispatch paused" in out.getvalue()

    call_command("channel", str(channel.pk), "--resume", "--rate-limit", "", stdout=out)
    channel.refresh_from_db()
    assert channel.dispatch_held_until is None and channel.rate_limit is None
    assert AuditEntry.objects.filter(source="command").count() == 2
