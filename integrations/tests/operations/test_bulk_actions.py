"""A bulk action never acts on more than was asked: a misspelt filter or option, a filter in
the body, a list's parameter or no filter at all answers 400 and acts on nothing; a previewed
set is the set acted on; many records are acted on by the workers, in batches, resumably; and
every action is in the audit log."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from accounts.services import token_create
from integrations.models import AuditEntry, BulkAction, ChannelGrant, FailedIntegration
from integrations.operations import bulk

pytestmark = pytest.mark.django_db


@pytest.fixture
def many(make_failed):
    """Three remote and two mapping records, active and unparked."""
    remote = [make_failed(object_id=n, reason_type="remote") for n in range(1, 4)]
    mapping = [make_failed(object_id=n, reason_type="mapping") for n in range(4, 6)]
    return remote, mapping


def base(channel) -> str:
    return f"/api/v1/channel/{channel.pk}/failed_integrations"


def parked() -> set[int]:
    return set(FailedIntegration.objects.filter(parked=True).values_list("pk", flat=True))


@pytest.mark.parametrize(
    ("query", "body", "named"),
    [
        ("?reason_typ=remote", None, "reason_typ"),  # a misspelt filter
        ("?reason_type=remote&dryrun=true", None, "dryrun"),
        ("?reason_type=remote", {"dryrun": True}, "dryrun"),
        ("?reason_type=remote", {"reason_type": "mapping"}, "reason_type"),  # a filter in the body
        ("", {"reason_type": "remote"}, "reason_type"),
        ("?reason_type=remote&page=2", None, "page"),
        ("?reason_type=remote&limit=5", None, "limit"),
        ("?reason_type=remote&sort=-pk", None, "sort"),
        ("?reason_type=remote&cursor=*", None, "cursor"),
        ("?reason_type=remote&reset_count=true", None, "reset_count"),  # park has no count
        ("?reason_type=remote&dry_run=perhaps", None, "dry_run"),
        ("?reason_type=remote&dry_run=false", {"dry_run": True}, "dry_run"),  # they disagree
        ("?reason_type=remote", {"all": "yes"}, "all"),
        ("?reason_type=remote", {"confirm": 5}, "confirm"),
        ("", None, "all"),  # no filter
        ("?reason_type=", None, "all"),  # an empty filter is none
        ("?channel={channel}", None, "all"),  # the URL's channel narrows nothing
        ("?reason_type=remote&all=true&dry_run=true&confirm=x", None, "dry_run"),
    ],
)
def test_fail_anything_but_filters_and_options_answers_400_and_acts_on_nothing(
    api_client, channel, many, query, body, named
):
    url = f"{base(channel)}/park/{query.format(channel=channel.pk)}"

    response = api_client.post(url, body, format="json") if body else api_client.post(url)

    assert response.status_code == 400
    assert named in response.json(), response.json()
    assert parked() == set()
    assert not AuditEntry.objects.exists()


def test_a_dry_run_in_the_query_string_acts_on_nothing(api_client, channel, many):
    remote, _ = many

    response = api_client.post(f"{base(channel)}/park/?reason_type=remote&dry_run=true")

    body = response.json()
    assert (body["dry_run"], body["matched"], body["affected"]) == (True, 3, 3)
    assert body["sample"] == [record.pk for record in remote]
    assert parked() == set()


def test_all_true_acts_on_every_record_of_the_channel(
    api_client, channel, many, make_failed, other_channel
):
    theirs = make_failed(channel=other_channel)

    response = api_client.post(f"{base(channel)}/park/?all=true")

    remote, mapping = many
    assert response.json()["affected"] == 5
    assert parked() == {record.pk for record in remote + mapping}
    assert theirs.pk not in parked()


def test_filters_and_options_in_the_query_and_options_in_the_body_act(api_client, channel, many):
    remote, _ = many

    response = api_client.post(
        f"{base(channel)}/park/?reason_type=remote&object_id__in=1,2",
        {"dry_run": False},
        format="json",
    )

    assert response.status_code == 200
    assert parked() == {remote[0].pk, remote[1].pk}


def preview(api_client, channel, action="park", query="?reason_type=remote", **body):
    response = api_client.post(
        f"{base(channel)}/{action}/{query}", {"dry_run": True, **body}, format="json"
    )
    assert response.status_code == 200, response.json()
    return response.json()


def test_the_previewed_set_is_the_set_acted_on(api_client, channel, many, make_failed):
    remote, _ = many
    seen = preview(api_client, channel)
    # Since the preview: a new record matches, and one previewed no longer does.
    arrived = make_failed(object_id=9, reason_type="remote")
    FailedIntegration.objects.filter(pk=remote[2].pk).update(reason_type="mapping")

    response = api_client.post(f"{base(channel)}/park/?confirm={seen['confirm']}")

    body = response.json()
    assert (body["matched"], body["affected"], body["no_longer_matched"]) == (3, 2, 1)
    assert parked() == {remote[0].pk, remote[1].pk}
    assert arrived.pk not in parked()
    assert body["operation"]["status"] == "done"


@pytest.mark.parametrize("previewed", [False, True])
def test_a_worker_looking_for_queued_actions_never_takes_one_a_request_acts_on(
    api_client, channel, many, monkeypatch, previewed
):
    """A worker's turn comes while the request saves its action (here: at the audit, between
    the save and the work): the worker finds nothing to take, and the request answers 200 when
    the work is done, never before."""
    remote, _ = many
    taken = []
    audit = bulk.audit

    def a_worker_s_turn_meanwhile(**kwargs):
        audit(**kwargs)
        pending = BulkAction.objects.get(pk=kwargs["bulk_action"].pk)
        taken.append(bulk._lease(pending, "worker:other"))

    url = f"{base(channel)}/park/?reason_type=remote"
    if previewed:
        url = f"{base(channel)}/park/?confirm={preview(api_client, channel)['confirm']}"
    monkeypatch.setattr(bulk, "audit", a_worker_s_turn_meanwhile)
    response = api_client.post(url)

    body = response.json()
    assert taken == [False]
    assert response.status_code == 200 and body["operation"]["status"] == "done"
    assert (body["matched"], body["affected"]) == (3, 3)
    assert parked() == {r.pk for r in remote}


def test_a_confirmation_is_good_once(api_client, channel, many):
    seen = preview(api_client, channel)
    first = api_client.post(f"{base(channel)}/park/", {"confirm": seen["confirm"]}, format="json")
    FailedIntegration.objects.update(parked=False)

    again = api_client.post(f"{base(channel)}/park/", {"confirm": seen["confirm"]}, format="json")

    assert first.status_code == 200
    assert again.status_code == 400 and "confirm" in again.json()
    assert parked() == set()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("other_action", "Made for park"),
        ("other_filters", "other filters"),
        ("expired", "Expired"),
        ("other_user", "Unknown"),
        ("reset_count", "reset_count"),
    ],
)
def test_fail_a_confirmation_that_does_not_hold_acts_on_nothing(
    api_client, anonymous_client, django_user_model, channel, many, change, message
):
    seen = preview(api_client, channel, action="park" if change != "reset_count" else "retry")
    action, query, client = "park", "", api_client
    if change == "other_action":
        action = "deactivate"
    elif change == "other_filters":
        query = "&reason_type=mapping"
    elif change == "expired":
        BulkAction.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    elif change == "other_user":
        colleague = django_user_model.objects.create_user(username="colleague")
        ChannelGrant.objects.create(user=colleague, channel=None, role="operator")
        anonymous_client.credentials(HTTP_AUTHORIZATION=f"Token {token_create(user=colleague)[1]}")
        client = anonymous_client
    elif change == "reset_count":
        action, query = "retry", "&reset_count=true"
    before = list(FailedIntegration.objects.values_list("pk", "parked", "is_active", "retry_count"))

    response = client.post(f"{base(channel)}/{action}/?confirm={seen['confirm']}{query}")

    assert response.status_code == 400
    assert message in response.json()["confirm"][0]
    assert (
        list(FailedIntegration.objects.values_list("pk", "parked", "is_active", "retry_count"))
        == before
    )


def test_the_same_filters_may_come_with_the_confirmation(api_client, channel, many):
    seen = preview(api_client, channel)

    response = api_client.post(
        f"{base(channel)}/park/?reason_type=remote&confirm={seen['confirm']}"
    )

    assert response.json()["affected"] == 3


def test_many_records_go_to_the_workers_in_batches(api_client, channel, make_failed, settings):
    settings.BULK_ACTION_SYNC_MAX = 5
    settings.BULK_ACTION_BATCH = 4
    records = [make_failed(object_id=n) for n in range(12)]

    response = api_client.post(f"{base(channel)}/park/?reason_type=remote")

    assert response.status_code == 202
    operation = response.json()["operation"]
    assert response["Location"] == operation["url"]
    assert (operation["status"], operation["total"], operation["processed"]) == ("queued", 12, 0)
    assert parked() == set()
    # A worker's turn that ends after one batch leaves the rest queued, its progress kept.
    bulk_action = BulkAction.objects.get(pk=operation["id"])
    assert bulk.work(BulkAction.objects.get(pk=bulk_action.pk), owner="x") is False  # no lease
    assert bulk.work_queued(worker="w1", seconds=0.0) == 0  # its turn was over at once
    assert BulkAction.objects.get(pk=bulk_action.pk).status == "queued"
    processed = 0
    while processed < 12:
        processed += bulk.work_queued(worker="w1")
    progress = api_client.get(operation["url"]).json()
    assert (progress["status"], progress["processed"], progress["affected"]) == ("done", 12, 12)
    assert parked() == {record.pk for record in records}
    entry = AuditEntry.objects.get(dry_run=False)
    assert (entry.outcome, entry.matched, entry.affected) == ("done", 12, 12)


def test_a_worker_resumes_where_a_lost_one_stopped(channel, make_failed, settings, user):
    settings.BULK_ACTION_SYNC_MAX = 1
    settings.BULK_ACTION_BATCH = 3
    records = [make_failed(object_id=n) for n in range(7)]
    asked = bulk.read_request("retry", _params("reason_type=remote"), {"reset_count": True})
    bulk.ask(channel=channel, user=user, request=asked, source="api")
    bulk_action = BulkAction.objects.get()
    # A worker took it, did one batch and vanished: its lease lapses.
    assert bulk._lease(bulk_action, "lost")
    BulkAction.objects.update(processed=3, affected=3)
    FailedIntegration.objects.filter(pk__in=[r.pk for r in records[:3]]).update(retry_count=0)
    FailedIntegration.objects.filter(pk__in=[r.pk for r in records[3:]]).update(retry_count=9)
    assert bulk.work_queued(worker="other") == 0  # the lease still holds
    BulkAction.objects.update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))

    while BulkAction.objects.get().status != "done":
        bulk.work_queued(worker="other")

    finished = BulkAction.objects.get()
    assert (finished.processed, finished.affected) == (7, 7)
    assert set(FailedIntegration.objects.values_list("retry_count", flat=True)) == {0}


def _params(text):
    from django.http import QueryDict

    return QueryDict(text)


def test_the_pks_are_kept_compactly():
    pks = [1, 2, 3, 10, 2**40, 2**62]

    packed, count = bulk.pack(pks)

    assert list(bulk.unpack(packed)) == pks and count == 6
    assert len(bulk.pack(range(1, 100_001))[0]) < 10_000  # 800 kB as 64-bit integers


def test_every_action_is_audited(api_client, channel, many, staff_user, client):
    remote, _ = many
    seen = preview(api_client, channel)
    api_client.post(f"{base(channel)}/park/?confirm={seen['confirm']}")
    api_client.post(f"{base(channel)}/{remote[0].pk}/unpark/")

    entries = api_client.get(f"/api/v1/audit/?channel={channel.pk}").json()["results"]

    assert [
        (e["action"], e["dry_run"], e["outcome"], e["matched"], e["affected"]) for e in entries
    ] == [
        ("unpark", False, "done", 1, 1),
        ("park", False, "done", 3, 3),
        ("park", True, "previewed", 3, 3),
    ]
    assert {e["user"] for e in entries} == {staff_user.username}
    assert entries[0]["record"] == remote[0].pk
    assert entries[1]["filters"] == "reason_type=remote"


def test_the_admin_s_actions_are_audited(client, channel, make_failed, django_user_model):
    record = make_failed()
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw-for-root-1")
    client.force_login(root)

    client.post(
        "/admin/integrations/failedintegration/",
        {"action": "park", "_selected_action": [record.pk]},
    )

    entry = AuditEntry.objects.get()
    assert (entry.source, entry.action, entry.username, entry.affected) == (
        "admin",
        "park",
        "root",
        1,
    )
    assert entry.filters == f"pk__in={record.pk}"


def test_the_audit_log_shows_only_channels_the_user_may_read(
    api_client, anonymous_client, user, channel, other_channel, many
):
    preview(api_client, channel)
    ChannelGrant.objects.create(user=user, channel=other_channel, role="viewer")
    anonymous_client.credentials(HTTP_AUTHORIZATION=f"Token {token_create(user=user)[1]}")

    theirs = anonymous_client.get("/api/v1/audit/").json()

    assert theirs["count"] == 0
    assert api_client.get("/api/v1/audit/?user=admin").json()["count"] == 1
    assert api_client.get("/api/v1/audit/?user=nobody").json()["count"] == 0
    assert api_client.get("/api/v1/audit/?since=2999-01-01T00:00:00Z").json()["count"] == 0
    bad = api_client.get("/api/v1/audit/?since=yesterday")
    assert bad.status_code == 400 and "since" in bad.json()


def test_a_preview_is_not_an_operation(api_client, channel, many):
    seen = preview(api_client, channel)
    bulk_action = BulkAction.objects.get()

    response = api_client.get(f"/api/v1/channel/{channel.pk}/operations/{bulk_action.pk}/")

    assert response.status_code == 404
    assert "confirm" in seen


def test_the_command_acts_by_the_same_rules(channel, many, staff_user):
    import io

    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="all"):
        call_command("act", str(channel.pk), "park", "", "--user", staff_user.username)
    out = io.StringIO()
    call_command(
        "act",
        str(channel.pk),
        "park",
        "reason_type=mapping",
        "--user",
        staff_user.username,
        stdout=out,
    )

    _, mapping = many
    assert parked() == {record.pk for record in mapping}
    assert AuditEntry.objects.get().source == "command"
