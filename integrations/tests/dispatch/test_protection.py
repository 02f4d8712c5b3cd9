"""Delivery protection against real HTTP receivers on 127.0.0.1: the circuit breaker opens on
the app's failures (never on the item's), holds the records without using their retries,
probes, closes and drains; a 429's Retry-After is respected to the second; an operator's pause
holds like an open circuit; the rate limit and the concurrency cap hold; claims are fair between
channels."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.utils import timezone

from integrations.choices import AttemptOutcome, State
from integrations.dispatch import protection
from integrations.dispatch.worker import Worker, WorkerConfig
from integrations.lifecycle.states import dispatch_of, record_state
from integrations.models import (
    Channel,
    ChannelDispatch,
    EngineEvent,
    FailedIntegration,
    RetryAttempt,
)

pytestmark = pytest.mark.django_db

PAST = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
Circuit = ChannelDispatch.Circuit


@pytest.fixture(autouse=True)
def fast_protection(settings):
    settings.BREAKER_FAILURES = 3
    settings.BREAKER_MIN_VOLUME = 1000  # the ratio rule stays out of the way, but where tested
    settings.DRAIN_START_RATE = 1000  # a recovered channel drains at once, but where tested


@pytest.fixture
def app(channel, receiver):
    channel.retry_endpoint = receiver.url
    channel.save()
    return receiver


def due_records(make_failed, n: int, **fields) -> list[FailedIntegration]:
    records = [
        make_failed(
            object_id=1000 + i, retry_count=0, max_retry_count=5, retry_interval=3600, **fields
        )
        for i in range(n)
    ]
    FailedIntegration.objects.filter(pk__in=[r.pk for r in records]).update(next_retry_at=PAST)
    return records


def work(**config) -> int:
    return Worker(WorkerConfig(**{"poll": 0.01, "timeout": 5, **config})).run(once=True)


def work_until(done, *, timeout: float = 15.0, **config) -> None:
    """Works in this thread (the test's data is in its transaction) until `done()`; a worker
    with nothing it may take now stops, and the next one looks again."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "not done in time"
        work(**config)
        time.sleep(0.02)


def states(channel) -> dict[str, int]:
    channel.refresh_from_db()
    found: dict[str, int] = {}
    for record in FailedIntegration.objects.filter(channel=channel):
        state = record_state(record, **dispatch_of(channel), now=timezone.now())
        found[state] = found.get(state, 0) + 1
    return found


def dispatch(channel) -> ChannelDispatch:
    return ChannelDispatch.objects.get(channel=channel)


def retries_used(channel) -> int:
    return sum(
        FailedIntegration.objects.filter(channel=channel).values_list("retry_count", flat=True)
    )


def test_the_app_s_failures_open_the_circuit_and_the_rest_are_held_untouched(
    channel, app, make_failed
):
    app.status = 500
    due_records(make_failed, 10)

    work(batch=32)

    # The send window starts at BREAKER_FAILURES: 3 attempts, 3 failures, open.
    assert len(app.received) == 3
    assert retries_used(channel) == 3
    assert dispatch(channel).circuit == Circuit.OPEN
    # The 3 attempted wait for their next retry; the 7 others are held.
    assert states(channel) == {State.HELD: 7, State.PENDING: 3}
    assert channel.dispatch_held_until == protection.FOREVER
    opened = EngineEvent.objects.get(kind=protection.OPENED)
    assert opened.channel_id == channel.pk and opened.failed_integration_id is None
    assert "3 failures in a row" in opened.payload["reason"]

    work(batch=32)  # while open: nothing is sent, no retry is used
    assert len(app.received) == 3 and retries_used(channel) == 3


def test_a_connection_refused_app_trips_it_too(channel, make_failed):
    from integrations.tests.receiver import closed_port_url

    channel.retry_endpoint = closed_port_url()
    channel.save()
    due_records(make_failed, 6)

    work()

    assert set(RetryAttempt.objects.values_list("outcome", flat=True)) == {AttemptOutcome.REFUSED}
    assert RetryAttempt.objects.count() == 3
    assert dispatch(channel).circuit == Circuit.OPEN


def test_the_item_s_failures_never_open_it(channel, app, make_failed):
    app.status = 422
    due_records(make_failed, 8)

    work(batch=1)

    assert len(app.received) == 8
    assert dispatch(channel).circuit == Circuit.CLOSED
    assert not EngineEvent.objects.filter(kind=protection.OPENED).exists()


def test_a_failure_ratio_over_the_window_opens_it(channel, app, make_failed, settings):
    settings.BREAKER_FAILURES = 100
    settings.BREAKER_MIN_VOLUME = 10
    # Alternating failures and successes: never 3 in a row, but half of 10.
    app.script = [(500 if i % 2 else 200, {}) for i in range(40)]
    due_records(make_failed, 30)

    work(batch=1)

    assert dispatch(channel).circuit == Circuit.OPEN
    assert len(app.received) == 10
    assert (
        "5 of 10 attempts failed"
        in EngineEvent.objects.get(kind=protection.OPENED).payload["reason"]
    )


def test_after_its_cool_down_it_probes_closes_and_drains(channel, app, make_failed):
    app.status = 500
    records = due_records(make_failed, 10)
    work()
    assert dispatch(channel).cool_down == 30
    held_before = {r.pk: r.retry_count for r in FailedIntegration.objects.filter(channel=channel)}

    # The app is back; the cool-down is over.
    app.status = 200
    ChannelDispatch.objects.filter(channel=channel).update(next_probe_at=timezone.now())
    work(batch=32)

    after = dispatch(channel)
    assert after.circuit == Circuit.CLOSED
    assert EngineEvent.objects.filter(kind=protection.CLOSED).count() == 1
    # The 7 held records went once each after the recovery (2 of them the probes), their
    # retries unused while it was open; the 3 that failed wait for their next retry.
    succeeded = RetryAttempt.objects.filter(outcome=AttemptOutcome.SUCCESS)
    assert succeeded.count() == 7
    assert sum(held_before.values()) == 3 and len(records) == 10
    assert FailedIntegration.objects.filter(channel=channel, is_active=True).count() == 3
    channel.refresh_from_db()
    assert channel.dispatch_held_until is None


def test_a_failed_probe_reopens_it_with_a_longer_cool_down(channel, app, make_failed):
    app.status = 503
    due_records(make_failed, 10)
    work()
    ChannelDispatch.objects.filter(channel=channel).update(next_probe_at=timezone.now())

    work()

    after = dispatch(channel)
    assert after.circuit == Circuit.OPEN
    assert after.cool_down == 60
    assert len(app.received) == 4  # 3, then one probe
    assert EngineEvent.objects.filter(kind=protection.OPENED).count() == 2


def test_a_channel_open_for_days_is_disabled(channel, app, make_failed, settings):
    app.status = 500
    due_records(make_failed, 5)
    work()
    ChannelDispatch.objects.filter(channel=channel).update(
        next_probe_at=timezone.now(), outage_since=timezone.now() - dt.timedelta(days=4)
    )

    work()

    assert dispatch(channel).disabled_at is not None
    assert len(app.received) == 3  # no probe: disabled instead
    assert EngineEvent.objects.filter(kind=protection.DISABLED).count() == 1
    protection.resume(channel, by="operator")
    assert dispatch(channel).disabled_at is None
    assert dispatch(channel).next_probe_at is not None


def test_retry_after_is_respected_to_the_second_and_not_counted(channel, app, make_failed):
    app.script = [(429, {"Retry-After": "2"})]
    records = due_records(make_failed, 1)

    work_until(lambda: len(app.received) == 2, batch=1)

    first, second = app.received
    assert 2.0 <= second.at - first.at < 3.5
    attempts = list(RetryAttempt.objects.order_by("pk").values_list("outcome", flat=True))
    assert attempts == [AttemptOutcome.THROTTLED, AttemptOutcome.SUCCESS]
    record = FailedIntegration.objects.get(pk=records[0].pk)
    assert record.retry_count == 0  # the 429 was not an attempt of the record
    assert not record.is_active


def test_a_held_channel_shows_its_due_records_as_held(channel, app, make_failed, api_client):
    app.status = 429
    app.headers = {"Retry-After": "120"}
    due_records(make_failed, 4)

    work(batch=1)

    channel.refresh_from_db()
    assert 115 <= (channel.dispatch_held_until - timezone.now()).total_seconds() <= 120
    listed = api_client.get(f"/api/v1/channel/{channel.pk}/failed_integrations/").json()
    assert {row["state"] for row in listed["results"]} == {State.HELD}
    held = api_client.get(
        f"/api/v1/channel/{channel.pk}/failed_integrations/", {"state": "held"}
    ).json()
    assert held["count"] == 4
    assert retries_used(channel) == 0


def test_a_paused_channel_is_held_until_resumed(channel, app, make_failed):
    due_records(make_failed, 5)
    protection.pause(channel, by="operator")

    work()

    assert app.received == []
    assert states(channel) == {State.HELD: 5}

    protection.resume(channel, by="operator")
    work_until(lambda: len(app.received) == 5)

    assert FailedIntegration.objects.filter(channel=channel, is_active=True).count() == 0


def test_the_rate_limit_holds(channel, app, make_failed):
    channel.rate_limit = 10
    channel.save()
    due_records(make_failed, 25)

    work_until(lambda: len(app.received) == 25, batch=32)

    times = sorted(item.at for item in app.received)
    assert len(times) == 25
    # One token to start, then 10 a second: 24 more take at least 2.4 s.
    assert times[-1] - times[0] >= 2.0
    for start in times:
        assert sum(start <= t < start + 1.0 for t in times) <= 11


def test_a_slow_app_gets_its_whole_rate_limit(channel, app, make_failed):
    """An app that answers in half a second, with a rate limit of 10/s: a worker with attempts
    in flight claims again when the next token is due, not when an answer comes (2/s) or at its
    poll, so the app gets its rate, and no more."""
    channel.rate_limit = 10
    channel.save()
    app.delay = 0.5
    due_records(make_failed, 20)

    work_until(lambda: len(app.received) == 20, batch=32, concurrency=20, poll=1.0)

    times = sorted(item.at for item in app.received)
    # One token to start, then 10 a second: the 19 others take 1.9 s (at 2/s, 9.5 s).
    assert 1.7 <= times[-1] - times[0] <= 3.5, times[-1] - times[0]
    for start in times:
        assert sum(start <= t < start + 1.0 for t in times) <= 11


def test_the_concurrency_cap_holds(channel, app, make_failed):
    channel.max_concurrency = 2
    channel.save()
    app.delay = 0.2
    due_records(make_failed, 8)

    work_until(lambda: len(app.received) == 8, batch=32, concurrency=8)

    assert app.most_in_flight <= 2


def test_a_drain_after_recovery_goes_at_the_rate_limit_at_once(channel, app, make_failed):
    channel.rate_limit = 10
    channel.save()
    due_records(make_failed, 4)
    protection.pause(channel, by="operator")
    protection.resume(channel, by="operator")

    assert protection.effective_rate(channel, dispatch(channel), timezone.now()) == 10
    work_until(lambda: len(app.received) == 4, batch=32)
    times = sorted(item.at for item in app.received)
    assert times[-1] - times[0] >= 0.25  # a token at a time, not all at once


def test_a_429_teaches_the_app_s_rate(channel, app, make_failed):
    """An app that takes 20 requests a second and answers 429 above: after the 429s of the
    first moment, the engine sends below its rate and the 429s stop; no retry is used."""
    app.rate_limit = 20
    due_records(make_failed, 90)

    work_until(
        lambda: not FailedIntegration.objects.filter(channel=channel, is_active=True).exists(),
        batch=32,
        concurrency=8,
        timeout=30,
    )

    learned = dispatch(channel).learned_rate
    assert app.throttled and learned is not None and 12 <= learned <= 22
    # The 429s came while the engine learned, within a moment of the first; a few more at
    # most, each lowering the rate a little, should the first lesson have come from a batch
    # of answers split between two gathers (a busy machine), not a burst at each hold's end.
    later = [t for t in app.throttled if t > app.throttled[0] + 1.5]
    assert len(later) <= 5, f"{len(later)} of {len(app.throttled)} 429s came later"
    assert retries_used(channel) == 0
    health = protection.effective_rate(channel, dispatch(channel), timezone.now())
    assert health == pytest.approx(learned)


def test_the_first_lesson_is_at_least_what_the_app_took(channel, settings):
    """An app that answers its 429s at once and its successes later: a burst of refusals in
    one batch does not teach less than the app answered in the last second."""
    settings.THROTTLE_LEARN_PERCENT = 90
    now = timezone.now()
    success = protection.Verdict(protection.SUCCESS)
    wait = protection.Verdict(protection.THROTTLED, 1.0, too_many=True)
    protection.taken(channel, protection.locked(channel.pk), 60, now)  # 60 sent
    protection.record_verdicts(channel.pk, [success] * 45, now=now)  # 45 taken
    protection.record_verdicts(channel.pk, [wait] * 36, now=now + dt.timedelta(seconds=0.5))

    # From what was sent less what was refused, 24 a second; the app took 45.
    assert dispatch(channel).learned_rate == pytest.approx(0.9 * 45)


def test_a_lesson_after_a_hold_does_not_count_the_hold_s_silence(channel, settings):
    """Sending again after a hold of a second: a 429 half a second later teaches what the app
    answered in that half second, a second's worth, not half of it."""
    settings.THROTTLE_LEARN_PERCENT = 90
    now = timezone.now()
    later = lambda seconds: now + dt.timedelta(seconds=seconds)  # noqa: E731
    success = protection.Verdict(protection.SUCCESS)
    wait = protection.Verdict(protection.THROTTLED, 1.0, too_many=True)
    protection.taken(channel, protection.locked(channel.pk), 60, now)
    protection.record_verdicts(channel.pk, [success] * 50, now=now)
    protection.record_verdicts(channel.pk, [wait] * 10, now=later(0.1))  # held until 1.1 s
    assert dispatch(channel).learned_rate == pytest.approx(0.9 * 50)
    # The hold ends at 1.1 s; in the next half second the app answers 22 (44 a second).
    protection.record_verdicts(channel.pk, [success] * 22, now=later(1.6))
    protection.record_verdicts(channel.pk, [wait], now=later(1.6))

    assert dispatch(channel).learned_rate == pytest.approx(0.9 * 44, rel=0.05)


def test_each_hold_lowers_the_learned_rate_once(channel, settings):
    settings.THROTTLE_LEARN_PERCENT = 90
    now = timezone.now()
    later = lambda seconds: now + dt.timedelta(seconds=seconds)  # noqa: E731
    success, wait = (
        protection.Verdict(protection.SUCCESS),
        protection.Verdict(protection.THROTTLED, 1.0, too_many=True),
    )
    protection.taken(channel, protection.locked(channel.pk), 30, now)  # 30 sent
    protection.record_verdicts(channel.pk, [success] * 20, now=now)
    # 429s together, as the attempts in flight get them: one lesson, from the 30 sent less
    # the 5 refused.
    protection.record_verdicts(channel.pk, [wait] * 5, now=later(0.5))
    assert dispatch(channel).learned_rate == pytest.approx(22.5)
    protection.record_verdicts(channel.pk, [wait], now=later(0.9))  # the same hold
    assert dispatch(channel).learned_rate == pytest.approx(22.5)
    # After it (held until 1.9 s), sent at 22.5/s: 22 in a second, of which the app refused 2
    # and has answered 12 so far (its answers lag). The lesson is what it took, 20 a second,
    # not the 12 answered.
    for at in (2.0, 2.5):
        protection.taken(channel, protection.locked(channel.pk), 11, later(at))
    protection.record_verdicts(channel.pk, [success] * 12, now=later(2.8))
    protection.record_verdicts(channel.pk, [wait] * 2, now=later(2.9))
    assert dispatch(channel).learned_rate == pytest.approx(0.9 * 20)
    # Nothing sent since (nothing to learn from): a tenth lower.
    protection.record_verdicts(channel.pk, [wait], now=later(4.5))
    assert dispatch(channel).learned_rate == pytest.approx(0.9 * 0.9 * 20)


def test_a_503_s_wait_holds_but_teaches_no_rate(channel):
    now = timezone.now()
    protection.taken(channel, protection.locked(channel.pk), 30, now)
    maintenance = protection.verdict(AttemptOutcome.HTTP_ERROR, 503, "60", now=now)
    assert maintenance.kind == protection.THROTTLED and not maintenance.too_many

    protection.record_verdicts(channel.pk, [maintenance], now=now)

    assert dispatch(channel).retry_after_until is not None
    assert dispatch(channel).learned_rate is None


def test_a_learned_rate_grows_back_and_is_forgotten(channel, settings):
    now = timezone.now()
    later = lambda seconds: now + dt.timedelta(seconds=seconds)  # noqa: E731
    growth, memory = settings.THROTTLE_GROWTH_SECONDS, settings.THROTTLE_MEMORY_SECONDS
    learned = ChannelDispatch(channel=channel, learned_rate=10.0, learned_at=now)
    assert protection.effective_rate(channel, learned, now) == 10
    assert protection.effective_rate(channel, learned, later(growth)) == pytest.approx(11)
    assert protection.effective_rate(channel, learned, later(memory)) is None
    assert learned.learned_rate is None  # forgotten
    # Grown up to the rate limit, the rate limit rules again.
    channel.rate_limit = 12
    learned = ChannelDispatch(channel=channel, learned_rate=10.0, learned_at=now)
    assert protection.effective_rate(channel, learned, later(growth)) == pytest.approx(11)
    assert protection.effective_rate(channel, learned, later(2 * growth)) == 12
    assert learned.learned_rate is None


def test_a_drain_after_recovery_without_a_rate_limit_starts_slow(
    channel, app, make_failed, settings
):
    settings.DRAIN_START_RATE = 5
    settings.DRAIN_DOUBLING_SECONDS = 60
    due_records(make_failed, 12)
    protection.pause(channel, by="operator")
    protection.resume(channel, by="operator")

    work_until(lambda: len(app.received) == 12, batch=32)

    times = sorted(item.at for item in app.received)
    assert len(times) == 12
    assert times[-1] - times[0] >= 1.5  # about 5 a second, not all at once


def test_claims_are_fair_between_channels(channel, other_channel, receiver, make_failed):
    for each in (channel, other_channel):
        each.retry_endpoint = receiver.url
        each.save()
    due_records(make_failed, 40)
    small = [
        make_failed(
            channel=other_channel, object_id=n, retry_count=0, max_retry_count=5, retry_interval=60
        )
        for n in range(3)
    ]
    FailedIntegration.objects.filter(pk__in=[r.pk for r in small]).update(next_retry_at=PAST)

    claimed = Worker(WorkerConfig(batch=10)).claim()

    by_channel: dict[int, int] = {}
    for item in claimed:
        by_channel[item.record.channel_id] = by_channel.get(item.record.channel_id, 0) + 1
    # The big backlog does not crowd out the small one; the batch is still used up.
    assert by_channel[other_channel.pk] == 3
    assert sum(by_channel.values()) == min(10, protection.window_of(ChannelDispatch()) + 3)


def test_the_verdicts():
    now = timezone.now()
    verdict = protection.verdict
    assert verdict(AttemptOutcome.SUCCESS, 200, None, now=now).kind == protection.SUCCESS
    assert verdict(AttemptOutcome.TIMEOUT, None, None, now=now).kind == protection.APP_FAILURE
    assert verdict(AttemptOutcome.HTTP_ERROR, 502, None, now=now).kind == protection.APP_FAILURE
    assert verdict(AttemptOutcome.HTTP_ERROR, 503, None, now=now).kind == protection.APP_FAILURE
    assert verdict(AttemptOutcome.HTTP_ERROR, 408, None, now=now).kind == protection.APP_FAILURE
    assert verdict(AttemptOutcome.HTTP_ERROR, 404, None, now=now).kind == protection.ITEM_FAILURE
    throttled = verdict(AttemptOutcome.HTTP_ERROR, 503, "7", now=now)
    assert (throttled.kind, throttled.wait) == (protection.THROTTLED, 7.0)
    assert verdict(AttemptOutcome.HTTP_ERROR, 429, None, now=now).wait == protection.DEFAULT_WAIT
    later = (now + dt.timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 28 <= verdict(AttemptOutcome.HTTP_ERROR, 429, later, now=now).wait <= 31
    assert verdict(AttemptOutcome.HTTP_ERROR, 429, "99999", now=now).wait == 3600.0
    assert verdict(AttemptOutcome.HTTP_ERROR, 429, "soon", now=now).wait == protection.DEFAULT_WAIT


def test_a_retry_after_in_other_digits_is_the_default_wait():
    now = timezone.now()
    assert protection.wait_of("7", now=now) == 7
    for text in ("²", "٣", "7\n7", "1e3"):
        assert protection.wait_of(text, now=now) == protection.DEFAULT_WAIT


def test_a_half_open_circuit_waits_for_a_retry_after_before_its_next_probe(channel):
    now = timezone.now()
    dispatch = ChannelDispatch.objects.create(
        channel=channel, circuit=Circuit.HALF_OPEN, retry_after_until=now + dt.timedelta(seconds=10)
    )

    def allowed(at):
        return protection.allowance(channel, dispatch, in_flight=0, want=5, now=at)

    assert allowed(now) == 0
    assert allowed(now + dt.timedelta(seconds=11)) == 1  # one probe at a time
    assert (
        protection.allowance(
            channel, dispatch, in_flight=1, want=5, now=now + dt.timedelta(seconds=11)
        )
        == 0
    )


def test_a_slow_channel_app_holds_only_its_own_attempts(channel, other_channel, make_failed):
    """Attempts are a pipeline: the fast channel's outcomes are written, and its next records
    claimed, while the slow app still has not answered."""
    from integrations.tests.receiver import Receiver

    slow, fast = Receiver(delay=1.5).start(), Receiver().start()
    try:
        channel.retry_endpoint, other_channel.retry_endpoint = slow.url, fast.url
        channel.save()
        other_channel.save()
        due_records(make_failed, 2)
        quick = [
            make_failed(channel=other_channel, object_id=n, max_retry_count=5, retry_interval=60)
            for n in range(30)
        ]
        FailedIntegration.objects.filter(pk__in=[r.pk for r in quick]).update(next_retry_at=PAST)

        work(batch=8, concurrency=8)
    finally:
        slow.stop()
        fast.stop()

    attempts = RetryAttempt.objects.filter(outcome=AttemptOutcome.SUCCESS)
    slow_done = min(
        attempts.filter(failed_integration__channel=channel).values_list("finished_at", flat=True)
    )
    fast_done = max(
        attempts.filter(failed_integration__channel=other_channel).values_list(
            "finished_at", flat=True
        )
    )
    assert attempts.filter(failed_integration__channel=other_channel).count() == 30
    # Every fast record (several claims' worth: the batch is 8) was done before the slow app
    # answered its first.
    assert fast_done < slow_done


def test_a_claim_s_statements_do_not_grow_with_the_channels(channel, app, make_failed):
    """Channels without due records, and channels whose app waits (paused here), cost a claim
    nothing: one statement finds the channels it may send to."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def statements() -> int:
        FailedIntegration.objects.update(lease_expires_at=None, lease_owner="")
        with CaptureQueriesContext(connection) as queries:
            claimed = Worker(WorkerConfig(batch=2)).claim()
        assert [item.record.channel_id for item in claimed] == [channel.pk, channel.pk]
        return len(queries)

    due_records(make_failed, 2)
    statements()  # the first claim makes the channel's dispatch row
    before = statements()
    for n in range(30):
        Channel.objects.create(name=f"idle {n}", retry_endpoint=app.url)
    for n in range(10):
        paused = Channel.objects.create(name=f"paused {n}", retry_endpoint=app.url)
        due_records(make_failed, 1, channel=paused)
        protection.pause(paused, by="operator")

    assert statements() == before


def test_a_claim_counts_what_is_in_flight_under_the_lock(channel, app, make_failed):
    """Two workers that read the channel before either claimed, each asking for less than the
    send window: the second one's claim, under the lock, sees the first one's leases and takes
    only what is left of the window."""
    due_records(make_failed, 20)
    first, second = Worker(WorkerConfig(batch=20)), Worker(WorkerConfig(batch=20))
    stale = Channel.objects.get(pk=channel.pk)  # as both read it: nothing in flight
    now = timezone.now()
    until = now + dt.timedelta(seconds=60)
    window = protection.window_of(ChannelDispatch())
    want = window - 1

    taken = first._claim_channel(stale, want=want, now=now, until=until)
    again = second._claim_channel(stale, want=want, now=now, until=until)

    assert len(taken) == want and len(again) == window - want
    assert second._claim_channel(stale, want=want, now=now, until=until) == {}


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres_only
def test_the_leases_end_in_the_commit_that_tells_the_breaker_their_answers(
    channel, make_failed, monkeypatch
):
    """Another worker's claim never sees a batch's attempts over (nothing in flight) while the
    circuit they opened is still closed: it would send a second send window to an app that
    is down."""
    import threading

    from django.db import connection

    from integrations.tests.receiver import closed_port_url

    channel.retry_endpoint = closed_port_url()
    channel.save()
    due_records(make_failed, 10)
    seen = []

    def as_another_worker_sees_it():
        try:
            in_flight = FailedIntegration.objects.filter(
                channel=channel, lease_expires_at__gt=timezone.now()
            ).count()
            circuit = ChannelDispatch.objects.get(channel=channel).circuit
            seen.append((in_flight, circuit))
        finally:
            connection.close()

    record_verdicts = protection.record_verdicts

    def looked_at_from_elsewhere(*args, **kwargs):
        other = threading.Thread(target=as_another_worker_sees_it)
        other.start()
        other.join()
        return record_verdicts(*args, **kwargs)

    monkeypatch.setattr(protection, "record_verdicts", looked_at_from_elsewhere)
    work(batch=10)

    window = protection.window_of(ChannelDispatch())
    assert seen == [(window, Circuit.CLOSED)]  # still in flight, as the claims see it
    assert ChannelDispatch.objects.get(channel=channel).circuit == Circuit.OPEN
    assert RetryAttempt.objects.filter(outcome="refused").count() == window
