"""A canary retry: N of the matched records are retried first; the rest only once all N
succeeded, and not at all if one failed. Against a real receiver on 127.0.0.1."""

from __future__ import annotations

import re

import pytest

from integrations.dispatch.worker import Worker, WorkerConfig
from integrations.models import BulkAction, FailedIntegration
from integrations.operations import bulk

pytestmark = pytest.mark.django_db


@pytest.fixture
def exhausted(channel, receiver, make_failed, settings):
    """Twelve records whose retries ran out, on a channel whose app is `receiver`."""
    settings.DRAIN_START_RATE = 1000
    channel.retry_endpoint = receiver.url
    channel.save()
    return [
        make_failed(object_id=n, retry_count=3, max_retry_count=3, retry_interval=3600)
        for n in range(12)
    ]


def retry_url(channel, query="") -> str:
    return f"/api/v1/channel/{channel.pk}/failed_integrations/retry/?reason_type=remote{query}"


def work_rounds(rounds: int = 6) -> None:
    for _ in range(rounds):
        Worker(WorkerConfig(poll=0.01, timeout=5)).run(once=True)


def test_the_rest_go_only_after_every_canary_succeeded(api_client, channel, receiver, exhausted):
    answer = api_client.post(retry_url(channel, "&canary=3"), {}, format="json")

    body = answer.json()
    assert answer.status_code == 200, body
    assert body["affected"] == 3
    assert body["operation"]["status"] == BulkAction.Status.CANARY
    assert body["operation"]["canary"]["size"] == 3
    canaries = {r.pk for r in exhausted[:3]}
    assert (
        set(
            FailedIntegration.objects.filter(next_retry_at__isnull=False).values_list(
                "pk", flat=True
            )
        )
        == canaries
    )

    work_rounds()

    received = [item.json["failed_integration"]["pk"] for item in receiver.received]
    assert set(received[:3]) == canaries  # the canaries went first
    assert sorted(received) == sorted(r.pk for r in exhausted)  # then every other, once
    action = BulkAction.objects.get(pk=body["operation"]["id"])
    assert action.status == BulkAction.Status.DONE
    assert action.affected == 12
    assert FailedIntegration.objects.filter(is_active=True).count() == 0
    data = api_client.get(body["operation"]["url"]).json()
    assert data["canary"]["succeeded"] == 3 and data["canary"]["failed"] == 0


def test_a_failed_canary_leaves_the_rest_as_they_were(api_client, channel, receiver, exhausted):
    receiver.status = 422
    before = {r.pk: (r.retry_count, r.next_retry_at) for r in exhausted[2:]}

    answer = api_client.post(retry_url(channel), {"canary": 2}, format="json").json()
    work_rounds()

    action = BulkAction.objects.get(pk=answer["operation"]["id"])
    assert action.status == BulkAction.Status.FAILED
    # It ends at the first failed canary (the other may still be on its way).
    assert re.search(r"[12] of 2 canaries failed", action.error) and "HTTP 422" in action.error
    assert len(receiver.received) == 2
    after = {
        r.pk: (r.retry_count, r.next_retry_at)
        for r in FailedIntegration.objects.filter(pk__in=before)
    }
    assert after == before
    operation = api_client.get(answer["operation"]["url"]).json()
    assert operation["status"] == "failed" and operation["canary"]["failed"] >= 1


@pytest.mark.parametrize(
    ("action", "query", "body"),
    [
        ("park", "&canary=2", None),  # retry only
        ("retry", "&canary=0", None),
        ("retry", "&canary=two", None),
        ("retry", "&canary=%C2%B2", None),  # "²": a digit to str.isdigit(), not to int()
        ("retry", "&canary=%D9%A3", None),  # "٣", an Arabic-Indic three
        ("retry", f"&canary={bulk.CANARY_MAX + 1}", None),
        ("retry", "", {"canary": True}),
        ("retry", "", {"canary": 2.5}),
        ("retry", "&canary=2", {"canary": 3}),  # they disagree
    ],
)
def test_fail_a_bad_canary_answers_400_naming_it_and_acts_on_nothing(
    api_client, channel, exhausted, action, query, body
):
    url = f"/api/v1/channel/{channel.pk}/failed_integrations/{action}/?reason_type=remote{query}"
    answer = api_client.post(url, body or {}, format="json")

    assert answer.status_code == 400
    assert "canary" in answer.json()
    assert not FailedIntegration.objects.filter(next_retry_at__isnull=False).exists()
    assert not FailedIntegration.objects.filter(parked=True).exists()


def test_a_preview_shows_its_canary_and_its_confirmation_keeps_it(api_client, channel, exhausted):
    preview = api_client.post(retry_url(channel, "&canary=4&dry_run=true"), {}, format="json")
    token = preview.json()["confirm"]
    assert preview.json()["canary"] == 4

    other = api_client.post(retry_url(channel, "&canary=5"), {"confirm": token}, format="json")
    done = api_client.post(retry_url(channel), {"confirm": token}, format="json").json()

    assert other.status_code == 400 and "canary" in other.json()["confirm"][0]
    assert done["operation"]["status"] == BulkAction.Status.CANARY
    assert FailedIntegration.objects.filter(next_retry_at__isnull=False).count() == 4


def test_the_act_command_takes_a_canary(channel, exhausted, staff_user):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command(
        "act",
        str(channel.pk),
        "retry",
        "reason_type=remote",
        "--canary",
        "2",
        "--user",
        staff_user.username,
        stdout=out,
    )

    assert BulkAction.objects.get().status == BulkAction.Status.CANARY
    assert FailedIntegration.objects.filter(next_retry_at__isnull=False).count() == 2
