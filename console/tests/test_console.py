"""The console follows the API's roles and rules: every route by every role (one table), CSRF,
bulk actions previewed then confirmed on exactly the previewed records, a record's actions and
its ETag-checked edit, a channel's settings for its admins only."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from console.urls import urlpatterns
from integrations.api.access import ADMIN, READ, WRITE
from integrations.choices import ReasonType
from integrations.models import AuditEntry, BulkAction, Channel, ChannelGrant, FailedIntegration
from integrations.reads.query import FILTERS

pytestmark = pytest.mark.django_db

PUBLIC = {"login", "logout"}
# What each route needs, by method: the table the matrix below is held to.
RULES = {
    "overview": {"get": "authenticated"},
    "audit": {"get": "authenticated"},
    "failures": {"get": READ},
    "export": {"get": READ},
    "failure": {"get": READ, "post": WRITE},
    "operation": {"get": READ},
    "act": {"post": WRITE},
    "settings": {"get": ADMIN, "post": ADMIN},
    "dispatch": {"post": WRITE},
}
LEVEL = {"viewer": READ, "operator": WRITE, "admin": ADMIN}
ORDER = (READ, WRITE, ADMIN)


def test_every_route_has_a_rule():
    assert {p.name for p in urlpatterns} - PUBLIC == set(RULES)


@pytest.fixture
def world(channel, make_failed, django_user_model):
    record = make_failed(reason_type="remote")
    operation = BulkAction.objects.create(
        channel=channel, action="park", status="done", filters=f"pk__in={record.pk}", total=1
    )
    return {"record": record, "operation": operation}


def url_of(name: str, channel, world) -> str:
    kwargs = {}
    pattern = next(p for p in urlpatterns if p.name == name)
    if "channel_id" in str(pattern.pattern):
        kwargs["channel_id"] = channel.pk
    if "<int:pk>" in str(pattern.pattern):
        kwargs["pk"] = (world["operation"] if name == "operation" else world["record"]).pk
    return reverse(f"console:{name}", kwargs=kwargs)


def body_of(name: str) -> dict:
    if name == "act":
        return {"action": "park", "scope": "all"}
    if name == "failure":
        return {"action": "park"}
    if name == "settings":
        return {"retry_endpoint": "https://apps.example.com/retry"}
    if name == "dispatch":
        return {"action": "pause"}
    return {}


CASES = [
    (name, method, needed) for name, methods in RULES.items() for method, needed in methods.items()
]


def logged_in(django_user_model, channel, role):
    user = django_user_model.objects.create_user(username="someone", password="pw-of-someone-1")
    if role == "superuser":
        user.is_superuser = True
        user.save()
    elif role in LEVEL:
        ChannelGrant.objects.create(user=user, channel=channel, role=role)
    elif role and role.startswith("global "):
        ChannelGrant.objects.create(user=user, channel=None, role=role.split()[1])
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(("name", "method", "needed"), CASES)
@pytest.mark.parametrize(
    "role",
    [None, "viewer", "operator", "admin", "global viewer", "global admin", "superuser"],
)
def test_each_role_reaches_what_it_gives_and_nothing_more(
    django_user_model, channel, world, name, method, needed, role
):
    client = logged_in(django_user_model, channel, role)
    before = list(FailedIntegration.objects.values_list("pk", "parked"))

    response = getattr(client, method)(url_of(name, channel, world), body_of(name))

    gives = {None: None, "superuser": ADMIN}.get(role) or LEVEL.get(
        role.split()[-1] if role else ""
    )
    if needed == "authenticated":
        assert response.status_code == 200
    elif gives is None:
        assert response.status_code == 404
    elif ORDER.index(gives) < ORDER.index(needed):
        assert response.status_code == 403
    else:
        assert response.status_code in (200, 302), response.content[:500]
    if response.status_code in (403, 404):
        assert list(FailedIntegration.objects.values_list("pk", "parked")) == before
        assert Channel.objects.get(pk=channel.pk).retry_endpoint == ""


@pytest.mark.parametrize(("name", "method", "needed"), CASES)
def test_anonymous_requests_go_to_the_login(channel, world, name, method, needed):
    response = getattr(Client(), method)(url_of(name, channel, world), body_of(name))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("console:login"))


def test_a_post_without_its_csrf_token_is_refused(django_user_model, channel, world):
    client = logged_in(django_user_model, channel, "operator")
    client.handler.enforce_csrf_checks = True

    response = client.post(url_of("act", channel, world), body_of("act"))

    assert response.status_code == 403
    assert not FailedIntegration.objects.filter(parked=True).exists()


def test_a_viewer_sees_no_action_control(django_user_model, channel, world):
    client = logged_in(django_user_model, channel, "viewer")

    page = client.get(url_of("failures", channel, world)).content.decode()
    record = client.get(url_of("failure", channel, world)).content.decode()

    assert 'name="action"' not in page and 'name="pk"' not in page
    assert 'name="action"' not in record
    assert "Settings" not in page


def test_login_and_logout(django_user_model):
    django_user_model.objects.create_user(username="op", password="pw-for-op-12345")
    client = Client(enforce_csrf_checks=False)

    wrong = client.post(reverse("console:login"), {"username": "op", "password": "nope"})
    right = client.post(reverse("console:login"), {"username": "op", "password": "pw-for-op-12345"})
    overview = client.get(reverse("console:overview"))
    out = client.post(reverse("console:logout"))

    assert wrong.status_code == 200 and "did not match" in wrong.content.decode()
    assert right.status_code == 302 and overview.status_code == 200
    assert out.status_code == 302
    assert client.get(reverse("console:overview")).status_code == 302


def test_the_login_is_throttled_with_the_api_s(django_user_model, settings):
    settings.LOGIN_RATE = "2/min"
    client = Client()

    answers = [
        client.post(reverse("console:login"), {"username": "x", "password": "y"}).status_code
        for _ in range(3)
    ]

    assert answers == [200, 200, 429]


def test_the_list_takes_the_api_s_filters_and_counts_exactly(
    django_user_model, channel, make_failed
):
    remote = [make_failed(object_id=n, reason_type="remote") for n in range(3)]
    make_failed(object_id=9, reason_type="mapping")
    client = logged_in(django_user_model, channel, "viewer")

    page = client.get(reverse("console:failures", args=[channel.pk]) + "?reason_type=remote")

    html = page.content.decode()
    assert 'data-count="3"' in html
    assert set(map(int, re.findall(r'data-pk="(\d+)"', html))) == {r.pk for r in remote}


def test_the_form_has_a_control_for_every_filter_of_the_api(
    django_user_model, channel, make_failed
):
    """Each of the API's filter parameters is a labelled control of the form (the pasted object
    ids stand for `object_id__in`); one given in the URL keeps its value and filters."""
    wanted = make_failed(object_id=5, max_retry_count=4, log_id=77)
    make_failed(object_id=6, max_retry_count=2)
    client = logged_in(django_user_model, channel, "viewer")

    page = client.get(reverse("console:failures", args=[channel.pk]), {"max_retry_count__gte": "3"})

    html = page.content.decode()
    start = html.index('id="filters"')
    form = html[start : html.index("</form>", start)]
    names = set(re.findall(r'<(?:input|select|textarea)[^>]* name="([^"]+)"', form))
    controls = set(re.findall(r'<(?:input|select|textarea) id="([^"]+)"', form))
    labels = set(re.findall(r'<label for="([^"]+)"', form))
    expected = (set(FILTERS) - {"sort", "object_id__in"}) | {"objects", "sort"}
    assert expected <= names, expected - names
    assert controls <= labels, controls - labels
    assert 'name="max_retry_count__gte" value="3"' in form
    assert '<details class="more" open>' in form
    assert set(map(int, re.findall(r'data-pk="(\d+)"', html))) == {wanted.pk}


def test_object_search_takes_several_ids(django_user_model, channel, make_failed):
    wanted = [make_failed(object_id=n) for n in (101, 102)]
    make_failed(object_id=103)
    client = logged_in(django_user_model, channel, "viewer")

    page = client.get(reverse("console:failures", args=[channel.pk]), {"objects": "101, 102\n"})

    assert set(map(int, re.findall(r'data-pk="(\d+)"', page.content.decode()))) == {
        w.pk for w in wanted
    }


def test_a_bad_filter_is_shown_not_a_500(django_user_model, channel, world):
    client = logged_in(django_user_model, channel, "viewer")

    page = client.get(reverse("console:failures", args=[channel.pk]) + "?is_active=perhaps")

    assert page.status_code == 200
    assert "is_active" in page.content.decode() and 'data-count="0"' in page.content.decode()


def test_keyset_pages_walk_every_record_once(django_user_model, channel, make_failed):
    made = {make_failed(object_id=n).pk for n in range(60)}
    client = logged_in(django_user_model, channel, "viewer")
    url, seen = reverse("console:failures", args=[channel.pk]) + "?sort=-pk&limit=25", []

    while url:
        html = client.get(url).content.decode()
        seen += [int(pk) for pk in re.findall(r'data-pk="(\d+)"', html)]
        found = re.search(r'href="\?([^"]+)" rel="next"', html)
        url = (
            reverse("console:failures", args=[channel.pk])
            + "?"
            + found.group(1).replace("&amp;", "&")
            if found
            else None
        )

    assert seen == sorted(made, reverse=True)


def test_a_bulk_action_acts_on_exactly_the_previewed_records(
    django_user_model, channel, make_failed
):
    remote = [make_failed(object_id=n, reason_type="remote") for n in range(3)]
    client = logged_in(django_user_model, channel, "operator")
    act = reverse("console:act", args=[channel.pk]) + "?reason_type=remote"

    preview = client.post(act, {"action": "park", "scope": "all"}).content.decode()
    token = re.search(r'name="confirm" value="([^"]+)"', preview).group(1)
    late = make_failed(object_id=99, reason_type="remote")
    done = client.post(
        reverse("console:act", args=[channel.pk]), {"action": "park", "confirm": token}
    )

    assert "3 records matched" in preview
    assert 'data-affected="3"' in done.content.decode()
    assert set(FailedIntegration.objects.filter(parked=True).values_list("pk", flat=True)) == {
        r.pk for r in remote
    }
    assert not FailedIntegration.objects.get(pk=late.pk).parked
    assert [e.source for e in AuditEntry.objects.order_by("pk")] == ["console", "console"]


def test_a_large_bulk_action_needs_its_count_typed(
    django_user_model, channel, make_failed, settings, monkeypatch
):
    import console.views

    monkeypatch.setattr(console.views, "TYPED_CONFIRMATION_ABOVE", 2)
    for n in range(3):
        make_failed(object_id=n)
    client = logged_in(django_user_model, channel, "operator")
    act = reverse("console:act", args=[channel.pk])

    preview = client.post(
        act + "?reason_type=remote", {"action": "park", "scope": "all"}
    ).content.decode()
    token = re.search(r'name="confirm" value="([^"]+)"', preview).group(1)
    wrong = client.post(act, {"action": "park", "confirm": token, "typed": "2"})
    parked_after_wrong = FailedIntegration.objects.filter(parked=True).count()
    right = client.post(act, {"action": "park", "confirm": token, "typed": "3"})

    assert 'name="typed"' in preview
    assert wrong.status_code == 400 and parked_after_wrong == 0
    assert right.status_code == 200 and FailedIntegration.objects.filter(parked=True).count() == 3


def test_selected_rows_are_the_only_ones_acted_on(django_user_model, channel, make_failed):
    records = [make_failed(object_id=n) for n in range(4)]
    client = logged_in(django_user_model, channel, "operator")
    act = reverse("console:act", args=[channel.pk])

    none = client.post(act, {"action": "park", "scope": "selected"})
    preview = client.post(
        act, {"action": "park", "scope": "selected", "pk": [records[1].pk, records[2].pk]}
    ).content.decode()
    token = re.search(r'name="confirm" value="([^"]+)"', preview).group(1)
    client.post(act, {"action": "park", "confirm": token})

    assert none.status_code == 400
    assert set(FailedIntegration.objects.filter(parked=True).values_list("pk", flat=True)) == {
        records[1].pk,
        records[2].pk,
    }


def test_only_the_actions_of_the_listed_states_are_offered(django_user_model, channel, make_failed):
    make_failed(parked=True)
    client = logged_in(django_user_model, channel, "operator")

    html = client.get(
        reverse("console:failures", args=[channel.pk]) + "?parked=true"
    ).content.decode()

    offered = re.findall(r'<option value="(retry|park|unpark|deactivate)"', html)
    assert offered == ["retry", "unpark", "deactivate"]


def test_a_record_is_parked_from_its_page_and_audited(django_user_model, channel, world):
    client = logged_in(django_user_model, channel, "operator")

    page = client.post(url_of("failure", channel, world), {"action": "park"})

    assert FailedIntegration.objects.get(pk=world["record"].pk).parked
    assert 'data-state="parked"' in page.content.decode()
    assert AuditEntry.objects.get().record == world["record"].pk


def test_an_edit_checks_the_etag_and_shows_a_conflict(django_user_model, channel, world):
    client = logged_in(django_user_model, channel, "operator")
    url = url_of("failure", channel, world)
    etag = re.search(r'name="etag" value="([^"]+)"', client.get(url).content.decode()).group(1)
    FailedIntegration.objects.filter(pk=world["record"].pk).update(  # someone else's change
        retry_interval=77, modified_date=timezone.now()
    )

    stale = client.post(
        url, {"action": "edit", "etag": etag.replace("&quot;", '"'), "max_retry_count": "9"}
    )
    fresh_etag = re.search(r'name="etag" value="([^"]+)"', stale.content.decode()).group(1)
    saved = client.post(
        url,
        {
            "action": "edit",
            "etag": fresh_etag.replace("&quot;", '"'),
            "max_retry_count": "9",
            "retry_interval": "77",
            "expiration_date": "",
        },
    )

    assert "changed since this page was read" in stale.content.decode()
    assert "Saved." in saved.content.decode()
    record = FailedIntegration.objects.get(pk=world["record"].pk)
    assert (record.max_retry_count, record.retry_interval) == (9, 77)


def test_settings_are_saved_by_the_api_s_rules(django_user_model, channel, world):
    client = logged_in(django_user_model, channel, "admin")
    url = url_of("settings", channel, world)

    bad = client.post(url, {"retry_endpoint": "http://169.254.169.254/"})
    good = client.post(
        url,
        {
            "retry_endpoint": "https://apps.example.com/retry",
            "signing_secret": "a-console-secret-123",
            "remote-auto_retry": "true",
            "remote-backoff": "exponential",
            "remote-backoff_factor": "3",
            "remote-max_delay": "600",
            "remote-jitter": "0.1",
            "mapping-default": "true",
            "channel_app-default": "true",
        },
    )
    page = client.get(url).content.decode()

    assert bad.status_code == 200 and "retry_endpoint" in bad.content.decode()
    assert good.status_code == 302
    channel.refresh_from_db()
    assert channel.retry_endpoint == "https://apps.example.com/retry"
    assert channel.signing_secret == "a-console-secret-123"
    assert channel.retry_policies.get().backoff_factor == 3.0
    assert "a-console-secret-123" not in page


def test_a_test_attempt_is_sent_signed_and_its_answer_shown(
    django_user_model, channel, world, receiver
):
    channel.retry_endpoint = receiver.url
    channel.signing_secret = "a-console-secret-123"
    channel.save()
    client = logged_in(django_user_model, channel, "admin")

    page = client.post(url_of("settings", channel, world), {"action": "ping"}).content.decode()

    assert "Answer: success (HTTP 200)" in page
    assert receiver.received[-1].headers["X-Signature"].startswith("sha256=")


def test_the_export_streams_the_filtered_records(django_user_model, channel, make_failed):
    make_failed(object_id=1, reason_type="remote")
    make_failed(object_id=2, reason_type="mapping")
    client = logged_in(django_user_model, channel, "viewer")

    response = client.get(
        reverse("console:export", args=[channel.pk]) + "?reason_type=mapping&format=csv"
    )

    lines = b"".join(response.streaming_content).decode().splitlines()
    assert len(lines) == 2 and lines[0].startswith("pk,")


def test_the_audit_page_lists_what_was_done(django_user_model, channel, world):
    client = logged_in(django_user_model, channel, "operator")
    client.post(url_of("failure", channel, world), {"action": "park"})

    page = client.get(reverse("console:audit") + f"?channel={channel.pk}").content.decode()

    assert 'data-count="1"' in page and f"record {world['record'].pk}" in page


def test_root_leads_to_the_console_and_api_root_lists_links(client):
    assert client.get("/")["Location"] == reverse("console:overview")
    links = client.get("/api/v1/").json()
    assert links["openapi"].endswith("/api/v1/openapi.json")


def test_the_demo_seeds_failures_in_every_state_with_attempts(channel):
    from django.http import QueryDict

    from integrations.demo import demo_seed
    from integrations.models import RetryAttempt
    from integrations.reads import selectors

    made = demo_seed(channel)
    channel.retry_endpoint = "https://apps.example.com/retry"  # "due" needs an endpoint
    stats = selectors.failed_integration_stats(channel=channel, params=QueryDict("group_by=state"))

    assert made >= 300
    assert {row["state"] for row in stats["results"]} >= {
        "pending",
        "due",
        "exhausted",
        "parked",
        "resolved",
        "superseded",
        "expired",
    }
    assert RetryAttempt.objects.filter(failed_integration__channel=channel).count() > 100
    # Scheduled as the default policies would: a mapping failure waits for a person.
    assert not FailedIntegration.objects.filter(
        channel=channel, reason_type="mapping", next_retry_at__isnull=False
    ).exists()


def test_an_operator_pauses_and_resumes_a_channel_s_dispatch(django_user_model, channel, world):
    from integrations.dispatch.protection import FOREVER

    channel.retry_endpoint = "https://apps.example.com/retry"
    channel.save()
    client = logged_in(django_user_model, channel, "operator")
    page = client.get(reverse("console:failures", args=[channel.pk])).content.decode()
    assert 'data-dispatch="sending"' in page and 'value="pause"' in page

    paused = client.post(reverse("console:dispatch", args=[channel.pk]), {"action": "pause"})
    channel.refresh_from_db()
    page = client.get(reverse("console:failures", args=[channel.pk])).content.decode()

    assert paused.status_code == 302
    assert channel.dispatch_held_until == FOREVER
    assert 'data-dispatch="paused"' in page and 'value="resume"' in page
    assert AuditEntry.objects.filter(action="pause", source="console").exists()

    client.post(reverse("console:dispatch", args=[channel.pk]), {"action": "resume"})
    channel.refresh_from_db()
    assert channel.dispatch_held_until is None
    bad = client.post(reverse("console:dispatch", args=[channel.pk]), {"action": "explode"})
    assert bad.status_code == 400


def test_a_viewer_sees_the_dispatch_but_no_pause(django_user_model, channel, world):
    channel.retry_endpoint = "https://apps.example.com/retry"
    channel.save()
    client = logged_in(django_user_model, channel, "viewer")
    page = client.get(reverse("console:failures", args=[channel.pk])).content.decode()
    assert 'data-dispatch="sending"' in page and 'value="pause"' not in page


def test_the_rate_limit_and_the_concurrency_cap_are_set_in_the_settings(
    django_user_model, channel, world
):
    client = logged_in(django_user_model, channel, "admin")
    url = reverse("console:settings", args=[channel.pk])
    form = {"retry_endpoint": "", **{f"{r}-default": "true" for r in ReasonType.values}}
    saved = client.post(url, {**form, "max_concurrency": "4", "rate_limit": "2.5"})
    channel.refresh_from_db()
    assert saved.status_code == 302
    assert (channel.max_concurrency, channel.rate_limit) == (4, 2.5)

    refused = client.post(url, {**form, "max_concurrency": "0", "rate_limit": ""})
    channel.refresh_from_db()
    assert refused.status_code == 200 and "max_concurrency" in refused.content.decode()
    assert channel.max_concurrency == 4

    client.post(url, {**form, "max_concurrency": "", "rate_limit": ""})
    channel.refresh_from_db()
    assert (channel.max_concurrency, channel.rate_limit) == (None, None)


def test_a_canary_retry_is_previewed_and_started_from_the_console(
    django_user_model, channel, make_failed
):
    records = [make_failed(object_id=n, retry_count=3, max_retry_count=3) for n in range(5)]
    client = logged_in(django_user_model, channel, "operator")
    act = reverse("console:act", args=[channel.pk]) + "?reason_type=remote"

    preview = client.post(act, {"action": "retry", "scope": "all", "canary": "2"})
    html = preview.content.decode()
    token = re.search(r'name="confirm" value="([^"]+)"', html).group(1)
    done = client.post(act, {"action": "retry", "confirm": token})

    assert "2 of them are retried first" in html
    assert 'data-status="canary"' in done.content.decode()
    due = FailedIntegration.objects.filter(next_retry_at__isnull=False)
    assert set(due.values_list("pk", flat=True)) == {r.pk for r in records[:2]}
    refused = client.post(act, {"action": "retry", "scope": "all", "canary": "lots"})
    assert refused.status_code == 400 and "canary" in refused.content.decode()
