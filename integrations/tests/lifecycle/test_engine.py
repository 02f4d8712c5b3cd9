"""The retry engine against a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import pytest
from django.test import override_settings
from django.utils import timezone

from integrations.choices import Backoff
from integrations.dispatch import worker
from integrations.lifecycle import policies, states, transitions
from integrations.models import EngineEvent, FailedIntegration, RetryAttempt, RetryPolicy
from integrations.records import services
from integrations.tests.receiver import Receiver, closed_port_url

pytestmark = pytest.mark.django_db

SECRET = "s3cret-signing-key"


@pytest.fixture
def retry_channel(channel, receiver):
    channel.retry_endpoint = receiver.url
    channel.signing_secret = SECRET
    channel.save()
    return channel


def report(channel, product_type, **fields):
    """A failure as a channel app reports it (through the service, so it is scheduled)."""
    payload = {
        "version_date": "2025-06-27T08:38:26Z",
        "reason_type": "remote",
        "content_type": product_type.pk,
        "object_id": 1,
        "max_retry_count": 3,
        **fields,
    }
    return services.failed_integration_create(channel=channel, payload=payload)


def make_due(record) -> None:
    FailedIntegration.objects.filter(pk=record.pk).update(
        next_retry_at=timezone.now() - dt.timedelta(seconds=1)
    )


def run_worker(**config) -> int:
    options = {"concurrency": 4, "batch": 50, "lease": 30, "timeout": 2, "poll": 0.01}
    options.update(config)
    return worker.Worker(worker.WorkerConfig(**options)).run(once=True)


def test_a_2xx_resolves_the_record(retry_channel, product_type, receiver):
    failed = report(retry_channel, product_type)

    assert run_worker() == 1

    failed.refresh_from_db()
    assert (failed.is_active, failed.resolution, failed.next_retry_at) == (False, "resolved", None)
    assert failed.resolved_at is not None and failed.last_error == ""
    assert failed.retry_count == 1  # a success is not a failed attempt
    attempt = RetryAttempt.objects.get(failed_integration=failed)
    assert (attempt.number, attempt.outcome, attempt.http_status) == (1, "success", 200)
    assert attempt.finished_at >= attempt.started_at
    assert len(receiver.received) == 1


def test_the_request_is_signed_and_carries_the_record(retry_channel, product_type, receiver):
    failed = report(retry_channel, product_type, object_id=77)

    run_worker()

    request = receiver.received[0]
    timestamp = request.headers["X-Timestamp"]
    expected = hmac.new(
        SECRET.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256
    ).hexdigest()
    assert request.headers["X-Signature"] == f"sha256={expected}"
    assert abs(int(timestamp) - timezone.now().timestamp()) < 60
    body = request.json
    attempt = RetryAttempt.objects.get(failed_integration=failed)
    assert request.headers["Idempotency-Key"] == body["idempotency_key"] == attempt.idempotency_key
    assert body["attempt"] == 1
    assert body["failed_integration"]["pk"] == failed.pk
    assert body["failed_integration"]["object_id"] == 77


def test_a_non_2xx_counts_an_attempt_and_schedules_the_next(retry_channel, product_type, receiver):
    receiver.status = 503
    failed = report(retry_channel, product_type, retry_interval=600)
    make_due(failed)  # the first attempt, too, waits retry_interval after creation

    run_worker()

    failed.refresh_from_db()
    assert failed.is_active and failed.retry_count == 2
    assert failed.last_error.startswith("HTTP 503")
    assert failed.next_retry_at == failed.last_attempt_at + dt.timedelta(seconds=600)
    attempt = RetryAttempt.objects.get(failed_integration=failed)
    assert (attempt.outcome, attempt.http_status) == ("http_error", 503)


def test_a_timeout_counts_an_attempt(retry_channel, product_type, receiver):
    receiver.delay = 1.5
    failed = report(retry_channel, product_type, retry_interval=60)
    make_due(failed)

    run_worker(timeout=0.5)

    failed.refresh_from_db()
    attempt = RetryAttempt.objects.get(failed_integration=failed)
    assert attempt.outcome == "timeout" and attempt.http_status is None
    assert failed.retry_count == 2 and "timed out" in failed.last_error


def test_a_refused_connection_counts_an_attempt(channel, product_type):
    channel.retry_endpoint = closed_port_url()
    channel.save()
    failed = report(channel, product_type, retry_interval=60)
    make_due(failed)

    run_worker()

    failed.refresh_from_db()
    attempt = RetryAttempt.objects.get(failed_integration=failed)
    assert attempt.outcome == "refused"
    assert failed.retry_count == 2 and failed.is_active


def test_no_attempt_before_the_retry_interval(retry_channel, product_type, receiver):
    receiver.status = 500
    failed = report(retry_channel, product_type, retry_interval=3600)

    run_worker()  # the first attempt waits retry_interval after creation
    failed.refresh_from_db()

    assert receiver.received == []
    assert failed.next_retry_at == failed.created_date + dt.timedelta(seconds=3600)
    make_due(failed)
    run_worker()
    run_worker()  # the next attempt is an hour away again
    assert len(receiver.received) == 1


def test_exhaustion_sends_its_event_once(retry_channel, product_type, receiver, settings):
    hook = Receiver().start()
    settings.EXHAUSTION_WEBHOOK_URL = hook.url
    receiver.status = 500
    failed = report(retry_channel, product_type, retry_count=2, max_retry_count=3)

    run_worker()
    run_worker()
    worker.deliver_events(worker.Poster(timeout=2))
    worker.deliver_events(worker.Poster(timeout=2))
    hook.stop()

    failed.refresh_from_db()
    assert failed.retry_count == 3 and failed.is_active and failed.next_retry_at is None
    assert (
        states.record_state(failed, has_endpoint=True, held=False, now=timezone.now())
        == "exhausted"
    )
    assert len(receiver.received) == 1
    event = EngineEvent.objects.get()
    assert event.delivered_at is not None
    assert [item.json for item in hook.received] == [event.payload]
    assert hook.received[0].json["event"] == "failed_integration.exhausted"


def test_an_update_from_an_earlier_read_does_not_schedule_a_record_past_its_retries(
    retry_channel, product_type, receiver, api_client
):
    """Two PATCHes at once: one lowers max_retry_count to the retries used, the other (which
    read the record before) changes another field. The record's retries have run out: it is
    not scheduled, and no attempt is made."""
    failed = report(retry_channel, product_type, retry_count=2, max_retry_count=5)
    make_due(failed)
    earlier_read = FailedIntegration.objects.get(pk=failed.pk)
    url = f"/api/v1/channel/{retry_channel.pk}/failed_integrations/{failed.pk}/"
    assert api_client.patch(url, {"max_retry_count": 2}, format="json").status_code == 200

    services.failed_integration_update(failed=earlier_read, payload={"log_id": 9}, partial=True)

    failed.refresh_from_db()
    assert (failed.log_id, failed.max_retry_count, failed.exhausted) == (9, 2, True)
    assert failed.next_retry_at is None
    assert api_client.get(url).json()["state"] == "exhausted"
    assert run_worker() == 0 and receiver.received == []


def test_an_outcome_is_derived_from_the_record_as_it_is_when_written(
    retry_channel, product_type, receiver, api_client
):
    """A PATCH during an attempt lowers max_retry_count: the failed attempt uses the last
    retry; the record is exhausted, not scheduled again, and its exhaustion is an event."""
    receiver.status = 503
    failed = report(retry_channel, product_type, retry_count=1, max_retry_count=5)
    make_due(failed)
    first = worker.Worker(worker.WorkerConfig(lease=30, timeout=2))
    claimed = first.claim()
    url = f"/api/v1/channel/{retry_channel.pk}/failed_integrations/{failed.pk}/"
    assert api_client.patch(url, {"max_retry_count": 2}, format="json").status_code == 200

    first.dispatch(claimed)

    failed.refresh_from_db()
    assert (failed.retry_count, failed.exhausted, failed.next_retry_at) == (2, True, None)
    assert EngineEvent.objects.filter(failed_integration=failed).count() == 1
    assert run_worker() == 0 and len(receiver.received) == 1


def test_a_record_out_of_retries_is_never_claimed_whatever_its_schedule_says(
    retry_channel, product_type, receiver, api_client
):
    """An exhausted record left scheduled for now (as racing writers could leave it, written
    here directly) is not leased or sent; the API, the counts and the channel's due backlog
    all show it exhausted, not due."""
    failed = report(retry_channel, product_type, retry_count=3, max_retry_count=3)
    make_due(failed)

    assert run_worker() == 0 and receiver.received == []
    base = f"/api/v1/channel/{retry_channel.pk}/failed_integrations/"
    assert api_client.get(f"{base}{failed.pk}/").json()["state"] == "exhausted"
    assert api_client.get(base, {"state": "due"}).json()["count"] == 0
    channel = api_client.get(f"/api/v1/channels/{retry_channel.pk}/").json()
    assert channel["dispatch"]["due"] == 0, channel


def test_a_retry_by_hand_of_an_exhausted_record_is_one_attempt(
    retry_channel, product_type, receiver, api_client
):
    """The operator's retry sends an exhausted record once; a failure uses one more retry and
    leaves it exhausted, not scheduled again. A 429 is not that attempt: the request stands."""
    failed = report(retry_channel, product_type, retry_count=3, max_retry_count=3)
    url = f"/api/v1/channel/{retry_channel.pk}/failed_integrations/{failed.pk}/retry/"
    assert api_client.post(url).json()["state"] == "due"

    receiver.status, receiver.headers = 429, {"Retry-After": "0"}
    run_worker()
    failed.refresh_from_db()
    assert (failed.retry_count, failed.retry_by_hand) == (3, True)

    receiver.status, receiver.headers = 500, {}
    FailedIntegration.objects.filter(pk=failed.pk).update(next_retry_at=timezone.now())
    from integrations.models import ChannelDispatch

    ChannelDispatch.objects.filter(channel=retry_channel).update(retry_after_until=None)
    retry_channel.__class__.objects.filter(pk=retry_channel.pk).update(dispatch_held_until=None)
    run_worker()
    failed.refresh_from_db()
    assert (failed.retry_count, failed.retry_by_hand, failed.next_retry_at) == (4, False, None)
    make_due(failed)  # whatever the schedule says now
    assert run_worker() == 0
    assert len(receiver.received) == 2


def test_parking_withdraws_a_retry_asked_for_by_hand(
    retry_channel, product_type, receiver, api_client
):
    failed = report(retry_channel, product_type, retry_count=3, max_retry_count=3)
    base = f"/api/v1/channel/{retry_channel.pk}/failed_integrations/{failed.pk}"
    assert api_client.post(f"{base}/retry/").status_code == 200
    assert api_client.post(f"{base}/park/").json()["state"] == "parked"
    assert api_client.post(f"{base}/unpark/").json()["state"] == "exhausted"

    failed.refresh_from_db()
    assert not failed.retry_by_hand
    make_due(failed)
    assert run_worker() == 0 and receiver.received == []


def test_an_attempt_whose_lease_was_claimed_again_counts_once(
    retry_channel, product_type, receiver
):
    """A worker whose outcome waited past its lease claims the record again (it was due): the
    first attempt's outcome is ignored as lease_lost, even in the same batch of outcomes as
    the second, which alone uses a retry."""
    receiver.status = 422
    failed = report(retry_channel, product_type, retry_count=1, max_retry_count=5)
    make_due(failed)
    busy = worker.Worker(worker.WorkerConfig(lease=30, timeout=2))
    first = busy.claim()
    worker.start_attempts(first, worker=busy.config.name)
    answers = [busy.send(item) for item in first]
    FailedIntegration.objects.filter(pk=failed.pk).update(
        lease_expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    again = busy.claim()
    worker.start_attempts(again, worker=busy.config.name)
    answers += [busy.send(item) for item in again]

    worker.finish_attempts(first + again, answers, worker=busy.config.name)

    failed.refresh_from_db()
    assert len(first) == len(again) == 1 and failed.retry_count == 2
    outcomes = [item.attempt.outcome for item in first + again]
    assert outcomes == ["lease_lost", "http_error"]
    assert failed.lease_owner == "" and failed.lease_expires_at is None


def test_mapping_is_not_retried_on_its_own_but_on_request(
    retry_channel, product_type, receiver, api_client
):
    failed = report(retry_channel, product_type, reason_type="mapping")

    run_worker()
    assert receiver.received == [] and failed.next_retry_at is None

    url = f"/api/v1/channel/{retry_channel.pk}/failed_integrations/{failed.pk}/retry/"
    assert api_client.post(url).json()["state"] == "due"
    run_worker()

    assert len(receiver.received) == 1


def test_an_update_retries_a_mapping_failure(retry_channel, product_type, receiver, api_client):
    failed = report(retry_channel, product_type, reason_type="mapping")

    url = f"/api/v1/channel/{retry_channel.pk}/failed_integrations/{failed.pk}/"
    api_client.patch(url, {"log_id": 5}, format="json")
    run_worker()

    assert len(receiver.received) == 1


def test_a_channel_without_endpoint_is_never_dispatched(channel, product_type, api_client):
    failed = report(channel, product_type)

    assert run_worker() == 0

    body = api_client.get(f"/api/v1/channel/{channel.pk}/failed_integrations/{failed.pk}/").json()
    assert body["state"] == "pending" and body["next_retry_at"] is not None


def test_exponential_backoff_and_jitter_come_from_the_policy(retry_channel, product_type):
    RetryPolicy.objects.create(
        channel=retry_channel,
        reason_type="remote",
        backoff=Backoff.EXPONENTIAL,
        backoff_factor=3,
        max_delay=500,
        jitter=0.5,
    )
    failed = report(retry_channel, product_type, retry_interval=10)
    policy = policies.policies_for(retry_channel.pk)["remote"]

    delays = [policies.delay_seconds(failed, policy, attempts=n) for n in range(6)]

    assert 10 <= delays[0] <= 15 and 30 <= delays[1] <= 45 and 90 <= delays[2] <= 135
    assert all(500 <= d <= 750 for d in delays[4:])  # capped, then jittered


def test_a_policy_can_stop_automatic_retries(retry_channel, product_type, receiver):
    RetryPolicy.objects.create(channel=retry_channel, reason_type="remote", auto_retry=False)

    report(retry_channel, product_type)
    run_worker()

    assert receiver.received == []


def test_parked_records_wait(retry_channel, product_type, receiver, api_client):
    failed = report(retry_channel, product_type)
    base = f"/api/v1/channel/{retry_channel.pk}/failed_integrations/{failed.pk}"

    assert api_client.post(f"{base}/park/").json()["state"] == "parked"
    run_worker()
    assert receiver.received == []
    assert api_client.post(f"{base}/unpark/").json()["state"] == "due"
    run_worker()
    assert len(receiver.received) == 1


def test_a_newer_version_supersedes_older_failures(retry_channel, product_type):
    old = report(retry_channel, product_type, version_date="2025-01-01T00:00:00Z")
    new = report(retry_channel, product_type, version_date="2025-02-01T00:00:00Z")
    stale = report(retry_channel, product_type, version_date="2024-12-01T00:00:00Z")
    other_object = report(
        retry_channel, product_type, object_id=2, version_date="2020-01-01T00:00:00Z"
    )

    for record in (old, new, stale, other_object):
        record.refresh_from_db()
    assert (old.is_active, old.resolution) == (False, "superseded")
    assert (stale.is_active, stale.resolution) == (False, "superseded")
    assert new.is_active and other_object.is_active
    assert old.next_retry_at is None


@pytest.mark.django_db(transaction=True)
def test_a_stored_report_is_answered_201_when_the_supersede_after_it_fails(
    retry_channel, product_type, api_client, monkeypatch
):
    from django.db import OperationalError

    report(retry_channel, product_type, version_date="2025-01-01T00:00:00Z")

    def unavailable(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(transitions, "supersede", unavailable)
    response = api_client.post(
        f"/api/v1/channel/{retry_channel.pk}/failed_integrations/",
        {
            "version_date": "2025-02-01T00:00:00Z",
            "reason_type": "remote",
            "content_type": product_type.pk,
            "object_id": 1,
        },
        format="json",
    )

    assert response.status_code == 201
    stored = FailedIntegration.objects.get(pk=response.json()["pk"])
    assert stored.version_date.month == 2
    # Not superseded yet: the next report of the object does it.
    assert FailedIntegration.objects.filter(object_id=1, is_active=True).count() == 2


def test_bulk_intake_supersedes_within_the_batch(retry_channel, product_type, api_client):
    items = [
        {
            "version_date": f"2025-0{month}-01T00:00:00Z",
            "reason_type": "remote",
            "content_type": product_type.pk,
            "object_id": 9,
        }
        for month in (3, 1, 2)
    ]

    body = api_client.post(
        f"/api/v1/channel/{retry_channel.pk}/failed_integrations/bulk/", items, format="json"
    ).json()

    assert [row["state"] for row in body["results"]] == ["exhausted", "superseded", "superseded"]


def test_expiry_and_retention(channel, make_failed, settings):
    settings.RETENTION_DAYS = 30
    now = timezone.now()
    expiring = make_failed(expiration_date=now - dt.timedelta(minutes=1))
    keeps = make_failed(expiration_date=now + dt.timedelta(days=1))
    old_inactive = make_failed(is_active=False)
    FailedIntegration.objects.filter(pk=old_inactive.pk).update(
        modified_date=now - dt.timedelta(days=31)
    )

    assert worker.expire_records() == 1
    assert worker.purge_records() == 1

    expiring.refresh_from_db()
    assert (expiring.is_active, expiring.resolution) == (False, "expired")
    assert FailedIntegration.objects.filter(pk=keeps.pk, is_active=True).exists()
    assert not FailedIntegration.objects.filter(pk=old_inactive.pk).exists()


def test_a_lapsed_lease_discards_a_late_answer(retry_channel, product_type, receiver):
    failed = report(retry_channel, product_type)
    first = worker.Worker(worker.WorkerConfig(lease=30, timeout=2))
    claimed = first.claim()
    FailedIntegration.objects.filter(pk=failed.pk).update(lease_owner="another-worker")

    first.dispatch(claimed)

    failed.refresh_from_db()
    assert failed.is_active  # the answer was not written
    assert RetryAttempt.objects.get().outcome == "lease_lost"


def test_attempts_endpoint(retry_channel, product_type, receiver, api_client):
    receiver.status = 502
    failed = report(retry_channel, product_type, max_retry_count=5, retry_interval=60)
    make_due(failed)
    run_worker()
    make_due(failed)
    receiver.status = 200
    run_worker()

    body = api_client.get(
        f"/api/v1/channel/{retry_channel.pk}/failed_integrations/{failed.pk}/attempts/"
    ).json()

    assert body["count"] == 2
    assert [(a["number"], a["outcome"], a["http_status"]) for a in body["results"]] == [
        (1, "http_error", 502),
        (2, "success", 200),
    ]
    assert body["results"][0]["error"].startswith("HTTP 502")


# --- operator actions in bulk -----------------------------------------------------------------


def test_bulk_actions_act_on_the_filtered_records_only(retry_channel, product_type, api_client):
    remote = [report(retry_channel, product_type, object_id=n) for n in range(3)]
    mapping = report(retry_channel, product_type, object_id=10, reason_type="mapping")
    base = f"/api/v1/channel/{retry_channel.pk}/failed_integrations"

    dry = api_client.post(f"{base}/park/?reason_type=remote", {"dry_run": True}, format="json")
    parked = api_client.post(f"{base}/park/?reason_type=remote")
    unparked = api_client.post(f"{base}/unpark/?object_id__in={remote[0].object_id}")
    deactivated = api_client.post(f"{base}/deactivate/?reason_type=mapping")

    counts = ("action", "matched", "affected", "dry_run")
    assert {k: dry.json()[k] for k in counts} == {
        "action": "park",
        "matched": 3,
        "affected": 3,
        "dry_run": True,
    }
    assert {k: parked.json()[k] for k in counts} == {
        "action": "park",
        "matched": 3,
        "affected": 3,
        "dry_run": False,
    }
    assert unparked.json()["affected"] == 1
    assert deactivated.json()["affected"] == 1
    answered = {
        r.pk: states.record_state(r, has_endpoint=True, held=False, now=timezone.now())
        for r in FailedIntegration.objects.all()
    }
    assert answered == {
        remote[0].pk: "due",
        remote[1].pk: "parked",
        remote[2].pk: "parked",
        mapping.pk: "resolved",
    }


def test_bulk_retry_with_reset(retry_channel, product_type, api_client):
    exhausted = report(retry_channel, product_type, retry_count=3, max_retry_count=3)
    base = f"/api/v1/channel/{retry_channel.pk}/failed_integrations"

    response = api_client.post(
        f"{base}/retry/?exhausted=true", {"reset_count": True}, format="json"
    )

    exhausted.refresh_from_db()
    assert response.json()["affected"] == 1
    assert exhausted.retry_count == 0 and exhausted.next_retry_at is not None


@pytest.mark.parametrize(
    ("body", "field"), [({"dry_run": "yes"}, "dry_run"), ([], "non_field_errors")]
)
def test_fail_bulk_action_with_bad_options(retry_channel, api_client, body, field):
    response = api_client.post(
        f"/api/v1/channel/{retry_channel.pk}/failed_integrations/retry/", body, format="json"
    )

    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_fail_bulk_action_with_a_bad_filter(retry_channel, api_client):
    response = api_client.post(
        f"/api/v1/channel/{retry_channel.pk}/failed_integrations/retry/?is_active=perhaps"
    )

    assert response.status_code == 400 and list(response.json()) == ["is_active"]


def test_fail_retry_of_an_inactive_record(retry_channel, make_failed, api_client):
    failed = make_failed(channel=retry_channel, is_active=False)

    response = api_client.post(
        f"/api/v1/channel/{retry_channel.pk}/failed_integrations/{failed.pk}/retry/"
    )

    assert response.status_code == 409
    assert response.json()["code"] == "conflict"


@override_settings(EXHAUSTION_WEBHOOK_URL="")
def test_events_without_a_webhook_are_logged_only(retry_channel, product_type, receiver, caplog):
    receiver.status = 500
    report(retry_channel, product_type, retry_count=2, max_retry_count=3)

    run_worker()
    worker.deliver_events(worker.Poster(timeout=2))

    assert "exhausted: retry_count 3 of 3" in caplog.text
    assert EngineEvent.objects.get().delivered_at is not None


def test_a_bulk_action_leaves_records_that_arrive_during_it(
    retry_channel, product_type, api_client, monkeypatch
):
    from django.db.models.query import QuerySet

    before = [report(retry_channel, product_type, object_id=n) for n in range(3)]
    arrived = []
    original_count = QuerySet.count

    def count_then_arrive(self):
        result = original_count(self)
        if not arrived:  # a channel app reports a matching failure while the action runs
            arrived.append(None)  # first, as the report counts too
            arrived[0] = report(retry_channel, product_type, object_id=99)
        return result

    monkeypatch.setattr(QuerySet, "count", count_then_arrive)
    response = api_client.post(
        f"/api/v1/channel/{retry_channel.pk}/failed_integrations/park/?reason_type=remote"
    )

    assert response.json()["affected"] == 3
    assert all(FailedIntegration.objects.get(pk=r.pk).parked for r in before)
    assert not FailedIntegration.objects.get(pk=arrived[0].pk).parked


def test_a_report_sent_twice_leaves_one_active_failure(retry_channel, product_type):
    first = report(retry_channel, product_type, object_id=5)
    again = report(retry_channel, product_type, object_id=5)  # e.g. after a lost answer

    first.refresh_from_db()
    again.refresh_from_db()
    assert (first.is_active, first.resolution) == (False, "superseded")
    assert again.is_active
