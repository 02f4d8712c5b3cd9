"""Exhaustion events: sent to the webhook by one worker at a time, retried after a failure, and
sent by another worker when the one that took them died."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter

import pytest
from django.db import connection
from django.utils import timezone

from integrations.dispatch import worker
from integrations.dispatch.poster import Poster
from integrations.models import EngineEvent, FailedIntegration
from integrations.tests.receiver import Receiver

LEASE = 30.0


def due_events(channel, content_type, n: int) -> list[int]:
    """`n` exhaustion events, all due now."""
    now = timezone.now()
    records = FailedIntegration.objects.bulk_create(
        FailedIntegration(
            channel=channel,
            content_type=content_type,
            object_id=i,
            reason_type="remote",
            version_date=now,
            retry_count=3,
            max_retry_count=3,
        )
        for i in range(n)
    )
    EngineEvent.objects.bulk_create(worker.exhaustion_event(r, now=now) for r in records)
    return [r.pk for r in records]


def received_per_record(hook: Receiver) -> Counter:
    return Counter(item.json["failed_integration"] for item in hook.received)


@pytest.fixture
def hook(settings):
    receiver = Receiver().start()
    settings.EXHAUSTION_WEBHOOK_URL = receiver.url
    yield receiver
    receiver.stop()


@pytest.fixture
def poster():
    client = Poster(timeout=2)
    yield client
    client.close()


class WorkerDied(BaseException):
    """The process ends here (killed, out of memory): nothing after it runs."""


class DyingPoster(Poster):
    def post(self, url, body, headers):
        raise WorkerDied


@pytest.mark.django_db
def test_an_event_whose_delivery_failed_is_sent_again_after_a_wait(
    channel, product_type, hook, poster
):
    due_events(channel, product_type, 1)
    hook.status = 500
    start = timezone.now()

    assert worker.deliver_events(poster, now=start, lease=LEASE) == 0
    event = EngineEvent.objects.get()
    assert event.delivered_at is None and event.delivery_attempts == 1
    assert event.last_error.startswith("HTTP 500")
    assert event.next_delivery_at == start + dt.timedelta(seconds=2)

    hook.status = 200
    assert worker.deliver_events(poster, now=start + dt.timedelta(seconds=1), lease=LEASE) == 0
    assert len(hook.received) == 1  # not yet: the wait is not over
    assert worker.deliver_events(poster, now=start + dt.timedelta(seconds=2), lease=LEASE) == 1

    event.refresh_from_db()
    assert len(hook.received) == 2 and hook.received[1].json == event.payload
    assert event.delivered_at == start + dt.timedelta(seconds=2)
    assert event.delivery_attempts == 2


@pytest.mark.django_db
def test_the_events_of_a_worker_that_died_while_sending_are_sent_once_its_claim_lapses(
    channel, product_type, hook, poster
):
    pks = due_events(channel, product_type, 5)
    start = timezone.now()
    with pytest.raises(WorkerDied):
        worker.deliver_events(DyingPoster(timeout=2), now=start, lease=LEASE)

    # Another worker, while the claim holds: nothing is due.
    assert worker.deliver_events(poster, now=start + dt.timedelta(seconds=1), lease=LEASE) == 0
    assert hook.received == []
    # Once it has lapsed, everything is.
    lapsed = start + dt.timedelta(seconds=LEASE + 1)
    assert worker.deliver_events(poster, now=lapsed, lease=LEASE) == 5

    assert received_per_record(hook) == Counter(pks)
    assert not EngineEvent.objects.filter(delivered_at__isnull=True).exists()


@pytest.mark.django_db
def test_events_a_worker_has_no_time_left_to_send_are_due_again_at_once(
    channel, product_type, hook
):
    due_events(channel, product_type, 10)
    hook.delay = 0.4
    start = timezone.now()
    slow = Poster(timeout=1)

    # A claim of 2 s, POSTs of 0.4 s that may take up to 1 s: a few are sent, then the claim
    # is too short for another.
    delivered = worker.deliver_events(slow, now=start, lease=2)
    slow.close()

    assert 1 <= delivered < 10 and len(hook.received) == delivered
    left = EngineEvent.objects.filter(delivered_at__isnull=True)
    assert left.count() == 10 - delivered
    assert all(event.next_delivery_at <= start for event in left)


@pytest.mark.django_db
def test_an_event_goes_with_its_key_as_idempotency_key(channel, product_type, hook, poster):
    due_events(channel, product_type, 1)

    worker.deliver_events(poster, lease=LEASE)

    event = EngineEvent.objects.get()
    assert hook.received[0].headers["Idempotency-Key"] == event.key
    assert hook.received[0].headers["Content-Type"] == "application/json"


@pytest.mark.django_db
def test_events_are_signed_with_a_secret_of_their_own(
    channel, product_type, hook, poster, settings
):
    from integrations.dispatch.signing import valid_signature

    settings.EVENTS_SIGNING_SECRET = "events-secret-0123456789"
    channel.signing_secret = "the-channel-s-own-secret-42"
    channel.save()
    due_events(channel, product_type, 1)

    worker.deliver_events(poster, lease=LEASE)

    sent = hook.received[0]
    timestamp, signature = sent.headers["X-Timestamp"], sent.headers["X-Signature"]
    assert valid_signature(signature, "events-secret-0123456789", timestamp, sent.body)
    assert not valid_signature(signature, "the-channel-s-own-secret-42", timestamp, sent.body)
    assert not valid_signature(signature, "events-secret-0123456789", timestamp, sent.body + b" ")


@pytest.mark.django_db
def test_a_channel_s_circuit_events_are_delivered_like_exhaustions(
    channel, product_type, hook, poster
):
    from integrations.dispatch import protection

    protection._event(channel, protection.OPENED, timezone.now(), reason="a test")

    assert worker.deliver_events(poster, lease=LEASE) == 1
    body = hook.received[0].json
    assert body["event"] == "channel.circuit_opened" and body["channel"] == channel.pk
    assert hook.received[0].headers["Idempotency-Key"] == EngineEvent.objects.get().key


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_workers_delivering_at_once_send_each_event_exactly_once(
    channel, product_type, settings
):
    hook = Receiver(delay=0.05).start()
    settings.EXHAUSTION_WEBHOOK_URL = hook.url
    pks = due_events(channel, product_type, 30)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run_housekeeping_until_all_delivered():
        # As a worker's housekeeping does, again and again: one takes the events, the other
        # asks again while they are being sent.
        client = Poster(timeout=5)
        try:
            start.wait()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                worker.deliver_events(client, lease=LEASE)
                if not EngineEvent.objects.filter(delivered_at__isnull=True).exists():
                    return
                time.sleep(0.01)
        except BaseException as exc:
            errors.append(exc)
        finally:
            client.close()
            connection.close()

    threads = [threading.Thread(target=run_housekeeping_until_all_delivered) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    hook.stop()

    assert errors == []
    per_record = received_per_record(hook)
    assert set(per_record) == set(pks)  # none missed
    assert max(per_record.values()) == 1  # none twice
    assert not EngineEvent.objects.filter(delivered_at__isnull=True).exists()
    assert set(EngineEvent.objects.values_list("delivery_attempts", flat=True)) == {1}
