"""Idempotent reports: a repeat of a report with its `Idempotency-Key` answers the first answer
again and writes nothing."""

from __future__ import annotations

import datetime as dt
import threading

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services import token_create
from integrations.models import ChannelGrant, FailedIntegration, IdempotencyKey
from integrations.records import idempotency

pytestmark = pytest.mark.django_db


def list_url(channel) -> str:
    return f"/api/v1/channel/{channel.pk}/failed_integrations/"


def bulk_url(channel) -> str:
    return f"{list_url(channel)}bulk/"


@pytest.fixture
def report(product_type) -> dict:
    return {
        "version_date": "2025-06-27T08:38:26Z",
        "reason_type": "remote",
        "content_type": product_type.pk,
        "object_id": 1001,
        "max_retry_count": 3,
    }


def post(client, url, body, key):
    return client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def stored(channel) -> int:
    return FailedIntegration.objects.filter(channel=channel).count()


def test_a_repeated_report_answers_the_first_answer_and_writes_nothing(api_client, channel, report):
    first = post(api_client, list_url(channel), report, "order-1001-a")
    again = post(api_client, list_url(channel), report, "order-1001-a")

    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
    assert stored(channel) == 1


def test_a_repeated_bulk_batch_writes_nothing(api_client, channel, report):
    batch = [report, {**report, "object_id": 1002}]

    first = post(api_client, bulk_url(channel), batch, "batch-7")
    again = post(api_client, bulk_url(channel), batch, "batch-7")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and first.json()["count"] == 2
    assert stored(channel) == 2


def test_the_repeat_answers_the_first_answer_although_the_record_changed_since(
    api_client, channel, report
):
    first = post(api_client, list_url(channel), report, "k")
    newer = api_client.post(list_url(channel), {**report, "log_id": 2}, format="json")
    assert newer.status_code == 201  # supersedes the first: it is no longer active

    again = post(api_client, list_url(channel), report, "k")

    assert again.json() == first.json() and again.json()["is_active"] is True
    assert stored(channel) == 2


def test_the_same_key_with_another_body_or_route_answers_422_and_writes_nothing(
    api_client, channel, report
):
    assert post(api_client, list_url(channel), report, "k").status_code == 201

    other_body = post(api_client, list_url(channel), {**report, "object_id": 9}, "k")
    other_route = post(api_client, bulk_url(channel), [report], "k")

    for answer in (other_body, other_route):
        assert answer.status_code == 422, answer.content
        assert answer.json()["code"] == "idempotency_key_reused"
        assert "Idempotency-Key" in answer.json()["detail"]
    assert stored(channel) == 1


def test_the_body_is_compared_as_json_not_as_bytes(api_client, channel, report):
    first = post(api_client, list_url(channel), report, "k")
    reordered = dict(reversed(list(report.items())))

    again = post(api_client, list_url(channel), reordered, "k")

    assert again.status_code == 201 and again.json() == first.json()
    assert stored(channel) == 1


def test_keys_belong_to_the_user_and_the_channel(
    api_client, channel, other_channel, report, product_type
):
    colleague = get_user_model().objects.create_user(username="app-2", password="s3cret-pass")
    ChannelGrant.objects.create(user=colleague, channel=None, role="operator")
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Token {token_create(user=colleague)[1]}")

    mine = post(api_client, list_url(channel), report, "k")
    theirs = post(other, list_url(channel), report, "k")
    elsewhere = post(api_client, list_url(other_channel), report, "k")

    assert mine.status_code == theirs.status_code == elsewhere.status_code == 201
    assert len({mine.json()["pk"], theirs.json()["pk"], elsewhere.json()["pk"]}) == 3


@pytest.mark.parametrize("key", ["", "x" * 256, "clé", "line\nbreak", "tab\there"])
def test_a_header_that_is_not_a_key_answers_400_naming_it(api_client, channel, report, key):
    answer = post(api_client, list_url(channel), report, key)

    assert answer.status_code == 400
    assert list(answer.json()) == ["Idempotency-Key"]
    assert stored(channel) == 0


def test_a_refused_report_keeps_no_key_so_its_correction_may_use_it(api_client, channel, report):
    refused = post(api_client, list_url(channel), {**report, "reason_type": "nope"}, "k")
    corrected = post(api_client, list_url(channel), report, "k")
    refused_batch = post(api_client, bulk_url(channel), [report, {"object_id": "x"}], "b")
    corrected_batch = post(api_client, bulk_url(channel), [report], "b")

    assert refused.status_code == refused_batch.status_code == 400
    assert corrected.status_code == corrected_batch.status_code == 201
    assert stored(channel) == 2


def test_a_key_is_forgotten_after_its_retention(api_client, channel, report, settings):
    first = post(api_client, list_url(channel), report, "k")
    hours = settings.IDEMPOTENCY_KEY_HOURS
    IdempotencyKey.objects.update(created_at=timezone.now() - dt.timedelta(hours=hours, minutes=1))

    again = post(api_client, list_url(channel), report, "k")

    assert again.status_code == 201 and again.json()["pk"] != first.json()["pk"]
    assert IdempotencyKey.objects.count() == 1  # the expired one replaced
    IdempotencyKey.objects.update(created_at=timezone.now() - dt.timedelta(hours=hours + 1))
    assert idempotency.purge() == 1 and not IdempotencyKey.objects.exists()


def test_a_repeat_whose_first_answer_was_not_kept_answers_the_records_now(
    api_client, channel, report
):
    """Stored, but lost before its answer was written: the repeat answers the stored records
    (as they are now), still without writing anything."""
    first = post(api_client, list_url(channel), report, "k")
    IdempotencyKey.objects.update(answer=None)

    again = post(api_client, list_url(channel), report, "k")

    assert again.status_code == 201 and again.json()["pk"] == first.json()["pk"]
    assert again["Idempotent-Replayed"] == "true"
    assert stored(channel) == 1
    FailedIntegration.objects.all().delete()
    gone = post(api_client, list_url(channel), report, "k")
    assert gone.status_code == 409 and "deleted" in gone.json()["detail"]


def test_a_report_without_a_key_is_stored_each_time(api_client, channel, report):
    for _ in range(2):
        assert api_client.post(list_url(channel), report, format="json").status_code == 201
    assert stored(channel) == 2 and not IdempotencyKey.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres_only
def test_concurrent_repeats_store_one_record_and_answer_it_to_each(
    live_server, staff_user, channel, report
):
    """Eight clients send one report with one key at once (a channel app's retries racing
    its first request): one record is stored and every client is answered it."""
    _, token = token_create(user=staff_user)
    start = threading.Barrier(8)
    answers: list[httpx.Response] = []

    def send():
        with httpx.Client(base_url=live_server.url) as client:
            start.wait()
            answers.append(
                client.post(
                    list_url(channel),
                    json=report,
                    headers={"Authorization": f"Token {token}", "Idempotency-Key": "race"},
                )
            )

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [a.status_code for a in answers] == [201] * 8, [a.text for a in answers]
    assert len({a.json()["pk"] for a in answers}) == 1
    assert stored(channel) == 1


def test_the_served_document_describes_the_header_on_both_reports(anonymous_client):
    paths = anonymous_client.get("/api/v1/openapi.json").json()["paths"]
    base = "/api/v1/channel/{channel_id}/failed_integrations/"

    for path in (base, f"{base}bulk/"):
        post = paths[path]["post"]
        header = [p for p in post["parameters"] if p.get("name") == "Idempotency-Key"]
        assert header and header[0]["in"] == "header" and not header[0]["required"]
        assert {"409", "422"} <= set(post["responses"])
        assert "Idempotent-Replayed" in post["responses"]["201"]["headers"]
