"""Delivery protection, per channel and across every worker: what may be sent to a channel app
now, and what its answers say about it.

* **Concurrency cap** (`Channel.max_concurrency`): attempts in flight (records leased) to the app.
  Below it, a send window (`ChannelDispatch.send_window`) starts at BREAKER_FAILURES, grows by
  one at each answer and halves at each of the app's failures: an app that goes down fails at
  most the attempts in flight, and one that is down from the start at most BREAKER_FAILURES,
  before the breaker opens.
* **Rate limit** (`Channel.rate_limit`, attempts per second): a token bucket in the channel's
  `ChannelDispatch` row, which every worker's claim locks (PostgreSQL; on SQLite, the one
  worker's own). A burst is at most a tenth of a second's worth (BURST_SECONDS). A claim may
  take the tokens of the next CLAIM_AHEAD seconds too, each attempt then sent when its token
  comes (`taken` answers when): the app gets its rate evenly however seldom the workers, busy
  with other channels, come to claim.
* **Asked to wait**: a 429, or a 503 with `Retry-After`, holds the channel's dispatch until then
  and is not counted as an attempt of the record (outcome `throttled`). It also teaches the
  channel a rate (`ChannelDispatch.learned_rate`): THROTTLE_LEARN_PERCENT of what the app took
  lately when the first came (sent less refused, a second lately or since the last hold ended,
  or what it answered if more), or at a later one of the learned rate, if less.
  The learned rate limits like the rate limit; it grows by a tenth every THROTTLE_GROWTH_SECONDS
  without a 429 (so that a limit the app raised is found again), and is forgotten after
  THROTTLE_MEMORY_SECONDS without one.
* **Circuit breaker**: the app's failures (no connection, timeout, transport error, 5xx, 408)
  open it after BREAKER_FAILURES in a row, or when they are BREAKER_RATIO of the attempts of a
  BREAKER_WINDOW_SECONDS window with at least BREAKER_MIN_VOLUME attempts. The item's failures
  (other 4xx) never do. While it is open nothing is sent, so no record's `retry_count` is used.
  After its cool-down (30 s, doubling at each failed probe, up to an hour) it is half-open: one
  probe at a time; BREAKER_CLOSE_AFTER answers from the app close it. Open for
  CHANNEL_DISABLE_AFTER_DAYS: the channel is disabled until an operator resumes it.
* **Pause**: an operator's hold, lifted by `resume`.
* **Drain after recovery**: when the circuit closes or the channel resumes, its backlog goes
  oldest first at its rate limit (set or learned), within the send window, never a burst; a
  channel without one starts at DRAIN_START_RATE per second, doubling every
  DRAIN_DOUBLING_SECONDS, until it no longer limits.

Opening, closing and disabling are logged and recorded as events (sent to the webhook with the
exhaustion events). While nothing may be sent, `Channel.dispatch_held_until` says until when, and
the channel's due records are in the state `held`.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import math
import random
import re
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from integrations.choices import AttemptOutcome
from integrations.models import Channel, ChannelDispatch, EngineEvent

logger = logging.getLogger(__name__)

Circuit = ChannelDispatch.Circuit
# Held with no end in sight: an open circuit, a pause, a disabled channel.
FOREVER = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)
# How long a 429 without Retry-After holds the channel, and the longest hold an app may ask.
DEFAULT_WAIT = 5.0
LONGEST_WAIT = 3600.0
# The most attempts in flight to one app that the send window grows to.
WINDOW_MAX = 10_000
# A rate's bucket holds BURST_SECONDS of its tokens; a claim may take those of the next
# CLAIM_AHEAD seconds too (sent when they come), and waits for CLAIM_SPACING seconds' worth.
BURST_SECONDS = 0.1
CLAIM_AHEAD = 0.1
CLAIM_SPACING = 0.05

SUCCESS, THROTTLED, APP_FAILURE, ITEM_FAILURE = "success", "throttled", "app", "item"
OPENED, CLOSED, DISABLED = "channel.circuit_opened", "channel.circuit_closed", "channel.disabled"


@dataclass(frozen=True)
class Verdict:
    kind: str  # SUCCESS, THROTTLED, APP_FAILURE or ITEM_FAILURE
    wait: float = 0.0  # seconds, when THROTTLED
    too_many: bool = False  # THROTTLED by a 429: the app limits what it takes


def verdict(outcome: str, http_status: int | None, retry_after: str | None, *, now) -> Verdict:
    """Whose an attempt's outcome is: the app's, the item's, or a request to wait."""
    if outcome == AttemptOutcome.SUCCESS:
        return Verdict(SUCCESS)
    if outcome != AttemptOutcome.HTTP_ERROR or http_status is None:
        return Verdict(APP_FAILURE)  # no answer: refused, timed out, broken
    if http_status == 429 or (http_status == 503 and retry_after is not None):
        return Verdict(THROTTLED, wait_of(retry_after, now=now), too_many=http_status == 429)
    if http_status >= 500 or http_status == 408:
        return Verdict(APP_FAILURE)
    return Verdict(ITEM_FAILURE)


def wait_of(retry_after: str | None, *, now: dt.datetime) -> float:
    """Seconds a Retry-After asks for (delta-seconds or an HTTP date), within 1 s and an hour."""
    seconds = DEFAULT_WAIT
    if retry_after:
        text = retry_after.strip()
        if re.fullmatch(r"[0-9]{1,10}", text):  # not str.isdigit(): it takes "²"
            seconds = float(text)
        else:
            try:
                when = email.utils.parsedate_to_datetime(text)
            except (TypeError, ValueError):
                when = None
            if when is not None and when.tzinfo is not None:
                seconds = (when - now).total_seconds()
    return min(max(seconds, 1.0), LONGEST_WAIT)


def hold_of(dispatch: ChannelDispatch, now: dt.datetime) -> dt.datetime | None:
    """Until when nothing is sent to the channel's app (None: attempts may go)."""
    if dispatch.paused_at or dispatch.disabled_at or dispatch.circuit != Circuit.CLOSED:
        return FOREVER
    if dispatch.retry_after_until and dispatch.retry_after_until > now:
        return dispatch.retry_after_until
    return None


def locked(channel_id: int) -> ChannelDispatch:
    """The channel's dispatch row, locked until the transaction ends (made on first use)."""
    ChannelDispatch.objects.get_or_create(channel_id=channel_id)
    return ChannelDispatch.objects.select_for_update().get(channel_id=channel_id)


def _save(dispatch: ChannelDispatch, now: dt.datetime, channel: Channel | None = None) -> None:
    """Saves `dispatch`, and the channel's hold when it changed (`channel`: as last read)."""
    dispatch.save()
    hold = hold_of(dispatch, now)
    if channel is not None and channel.dispatch_held_until == hold:
        return
    Channel.objects.filter(pk=dispatch.channel_id).update(dispatch_held_until=hold)
    if channel is not None:
        channel.dispatch_held_until = hold


# --- what may be sent -----------------------------------------------------------------------


def effective_rate(channel: Channel, dispatch: ChannelDispatch, now: dt.datetime) -> float | None:
    """Attempts per second allowed now (None: no limit): the rate limit or the learned rate,
    whichever is lower; without either, the ramp of a drain after a recovery."""
    rates = [r for r in (channel.rate_limit, learned_rate(channel, dispatch, now)) if r]
    if rates:
        dispatch.recovering_since = None  # a known rate needs no ramp
        return min(rates)
    if dispatch.recovering_since is None:
        return None
    elapsed = max((now - dispatch.recovering_since).total_seconds(), 0.0)
    ramp = settings.DRAIN_START_RATE * 2 ** min(elapsed / settings.DRAIN_DOUBLING_SECONDS, 60.0)
    if ramp >= settings.DRAIN_END_RATE:
        dispatch.recovering_since = None  # drained up to speed
        return None
    return ramp


def learned_rate(channel: Channel, dispatch: ChannelDispatch, now: dt.datetime) -> float | None:
    """The rate the app's 429s taught, grown since the last one (None: none, or forgotten)."""
    if dispatch.learned_rate is None or dispatch.learned_at is None:
        return None
    quiet = max((now - dispatch.learned_at).total_seconds(), 0.0)
    grown = dispatch.learned_rate * 1.1 ** (quiet // settings.THROTTLE_GROWTH_SECONDS)
    if quiet >= settings.THROTTLE_MEMORY_SECONDS or (
        channel.rate_limit is not None and grown >= channel.rate_limit
    ):
        dispatch.learned_rate = dispatch.learned_at = None
        return None
    return grown


def allowance(
    channel: Channel, dispatch: ChannelDispatch, *, in_flight: int, want: int, now: dt.datetime
) -> int:
    """How many due records of the channel a worker may take now, with `dispatch` locked: 0
    while held; one probe at a time while half-open; within the concurrency cap and the rate
    limit's tokens otherwise. Moves an open circuit whose cool-down is over to half-open."""
    if waiting(channel, dispatch, now):
        return 0
    if dispatch.circuit == Circuit.OPEN:
        if _disabling(dispatch, now):
            _disable(channel, dispatch, now)
            return 0
        # Its probe is due.
        dispatch.circuit, dispatch.circuit_since, dispatch.probe_successes = (
            Circuit.HALF_OPEN,
            now,
            0,
        )
        logger.info("channel %s: circuit half-open, probing", channel.pk)
        _save(dispatch, now, channel)
    if dispatch.retry_after_until and dispatch.retry_after_until > now:
        return 0  # the app asked to wait: not even a probe
    if dispatch.circuit == Circuit.HALF_OPEN:
        return 1 if in_flight == 0 and want > 0 else 0
    want = min(want, in_flight_cap(channel, dispatch) - in_flight)
    rate = effective_rate(channel, dispatch, now)
    if rate is not None:
        _refill(dispatch, rate, now)
        want = min(want, math.floor(dispatch.tokens + rate * CLAIM_AHEAD))
    return max(want, 0)


HELD, LIMITED = "held", "limited"


def waiting(channel: Channel, dispatch: ChannelDispatch, now: dt.datetime) -> str | None:
    """Why nothing may be sent to the app now, when nothing is to be done about it either (no
    probe due, no disabling), so that a claim need not lock the channel's row to know: HELD
    (paused, disabled, an open circuit, a Retry-After) or LIMITED (no token of the rate yet);
    None: ask `allowance`, with the row locked."""
    if dispatch.paused_at or dispatch.disabled_at:
        return HELD
    if dispatch.circuit == Circuit.OPEN:
        probe_due = dispatch.next_probe_at is not None and dispatch.next_probe_at <= now
        return None if probe_due or _disabling(dispatch, now) else HELD
    if dispatch.retry_after_until and dispatch.retry_after_until > now:
        return HELD
    if dispatch.circuit == Circuit.CLOSED and dispatch.tokens_at is not None:
        rate = effective_rate(channel, dispatch, now)
        if rate is not None and _available(dispatch, rate, now) < 1.0:
            return LIMITED
    return None


def _disabling(dispatch: ChannelDispatch, now: dt.datetime) -> bool:
    return bool(dispatch.outage_since and now - dispatch.outage_since >= _disable_after())


def in_flight_cap(channel: Channel, dispatch: ChannelDispatch) -> int:
    """The most attempts that may be in flight to the app now: the send window, within the
    concurrency cap."""
    window = window_of(dispatch)
    return window if channel.max_concurrency is None else min(window, channel.max_concurrency)


def window_of(dispatch: ChannelDispatch) -> int:
    return dispatch.send_window or settings.BREAKER_FAILURES


def _refill(dispatch: ChannelDispatch, rate: float, now: dt.datetime) -> None:
    """Tokens accrue at `rate` a second, up to BURST_SECONDS' worth (at least one): any one
    second sees at most the rate and that burst. Below zero, they are the next ones, taken
    ahead (`taken`). (The workers' claims spread out by the jitter of their waits for the
    tokens, `token_wait`, not by tokens lost.)"""
    capacity = max(1.0, rate * BURST_SECONDS)
    if dispatch.tokens_at is None:
        dispatch.tokens, dispatch.tokens_at = 1.0, now
    else:
        dispatch.tokens = min(capacity, dispatch.tokens + _accrual(dispatch, rate, now))
        # Never back in time (a claim's clock read before another's took its tokens).
        dispatch.tokens_at = max(dispatch.tokens_at, now)


def _accrual(dispatch: ChannelDispatch, rate: float, now: dt.datetime) -> float:
    """The tokens accrued since the last refill."""
    return rate * max((now - dispatch.tokens_at).total_seconds(), 0.0)


def _available(dispatch: ChannelDispatch, rate: float, now: dt.datetime) -> float:
    """The tokens a claim may take now: those accrued and those of the next CLAIM_AHEAD s."""
    return dispatch.tokens + _accrual(dispatch, rate, now) + rate * CLAIM_AHEAD


def token_wait(channel: Channel, dispatch: ChannelDispatch, now: dt.datetime) -> float | None:
    """Seconds until the channel's rate has tokens for a claim, with up to a tenth more of
    jitter so that the workers waiting for them do not all come at once (0: they are there
    now; None: no rate limits it). A claim waits for one token, or for CLAIM_SPACING's worth
    when that is more (a fast rate is taken a few at a time rather than in a claim each),
    always less than the bucket holds: none is lost to the wait."""
    rate = effective_rate(channel, dispatch, now)
    if rate is None or dispatch.tokens_at is None:
        return None
    missing = max(1.0, rate * CLAIM_SPACING) - _available(dispatch, rate, now)
    return max(missing, 0.0) / rate * random.uniform(1.0, 1.1)


def taken(channel: Channel, dispatch: ChannelDispatch, count: int, now: dt.datetime) -> list[float]:
    """Records that a claim took `count` records (their tokens), with `dispatch` locked, and
    answers when each may be sent: seconds from `now`, 0 but for the tokens taken ahead, each
    sent when it comes. Taking none changes nothing worth a write: a refill need not be written
    (the next one accrues from the last one written), and the changes of state write
    themselves."""
    if not count:
        return []
    waits = [0.0] * count
    if dispatch.tokens_at is not None:
        rate = effective_rate(channel, dispatch, now)
        if rate is not None:
            waits = [max(0.0, (k + 1 - dispatch.tokens) / rate) for k in range(count)]
        dispatch.tokens -= count
    _count(dispatch, "sent", count, now)
    _save(dispatch, now, channel)
    return waits


# Three counts in the dispatch row ("sent", "answered", "refused"), each in windows of a second
# or more. A window starts again when a hold ends: what came before the hold says nothing of
# what the app takes since.
def _count(dispatch: ChannelDispatch, name: str, count: int, now: dt.datetime) -> None:
    since = getattr(dispatch, f"{name}_since")
    elapsed = (now - since).total_seconds() if since else None
    if _before_hold_end(dispatch, since, now):
        setattr(dispatch, f"{name}_rate", None)
        setattr(dispatch, f"{name}_since", dispatch.retry_after_until)
        setattr(dispatch, f"{name}_count", 0)
    elif elapsed is None or elapsed >= 1.0:
        rate = None if elapsed is None else getattr(dispatch, f"{name}_count") / elapsed
        setattr(dispatch, f"{name}_rate", rate)
        setattr(dispatch, f"{name}_since", now)
        setattr(dispatch, f"{name}_count", 0)
    setattr(dispatch, f"{name}_count", getattr(dispatch, f"{name}_count") + count)


def _before_hold_end(dispatch: ChannelDispatch, since: dt.datetime | None, now) -> bool:
    """Whether a count's window began before the end of a hold that is over."""
    end = dispatch.retry_after_until
    return since is not None and end is not None and since < end <= now


def in_last_second(dispatch: ChannelDispatch, name: str, now: dt.datetime) -> float:
    """About how many the count `name` counted in the last second: this window's, and the part
    of the window before that the last second still holds."""
    since, count = getattr(dispatch, f"{name}_since"), getattr(dispatch, f"{name}_count")
    if since is None or _before_hold_end(dispatch, since, now):
        return 0.0
    elapsed = (now - since).total_seconds()
    if elapsed >= 1.0:
        return count / elapsed
    return count + (getattr(dispatch, f"{name}_rate") or 0.0) * (1.0 - max(elapsed, 0.0))


def rate_lately(dispatch: ChannelDispatch, name: str, now: dt.datetime) -> float:
    """What the count `name` counted a second lately, a second: in the last second, or, when
    the last hold ended within it, in the time since (nothing was sent during the hold; a fifth
    of a second at least, so that a moment's counts do not pass for a second's)."""
    counted = in_last_second(dispatch, name, now)
    end = dispatch.retry_after_until
    if end is None or end >= now:
        return counted
    sending = (now - end).total_seconds()
    return counted / min(max(sending, 0.2), 1.0)


# --- what the answers say -------------------------------------------------------------------


def record_verdicts(channel_id: int, verdicts: list[Verdict], *, now: dt.datetime) -> None:
    """Updates the channel's breaker and holds from a batch's answers (in their order)."""
    if not verdicts:
        return
    with transaction.atomic():
        dispatch = locked(channel_id)
        channel = Channel.objects.get(pk=channel_id)
        if (
            dispatch.window_started_at is None
            or (now - dispatch.window_started_at).total_seconds() > settings.BREAKER_WINDOW_SECONDS
        ):
            dispatch.window_started_at, dispatch.window_attempts, dispatch.window_failures = (
                now,
                0,
                0,
            )
        _count(dispatch, "answered", sum(1 for each in verdicts if each.kind != THROTTLED), now)
        _count(dispatch, "refused", sum(1 for each in verdicts if each.too_many), now)
        for each in verdicts:
            if each.kind == THROTTLED:
                dispatch.send_window = max(1, window_of(dispatch) // 2)
                if each.too_many and not (
                    dispatch.retry_after_until and dispatch.retry_after_until > now
                ):
                    # Once per hold: its 429s come together. (A 503's wait teaches nothing:
                    # an app down for maintenance does not limit a rate.)
                    _learn(channel, dispatch, now)
                until = now + dt.timedelta(seconds=each.wait)
                if dispatch.retry_after_until is None or dispatch.retry_after_until < until:
                    dispatch.retry_after_until = until
                continue
            dispatch.window_attempts += 1
            if each.kind == APP_FAILURE:
                dispatch.send_window = max(1, window_of(dispatch) // 2)
                dispatch.consecutive_failures += 1
                dispatch.window_failures += 1
                dispatch.last_failure_at = now
                if dispatch.circuit == Circuit.HALF_OPEN:
                    _open(channel, dispatch, now, reason="the probe failed")
                elif dispatch.circuit == Circuit.CLOSED and _trips(dispatch):
                    _open(channel, dispatch, now, reason=_trip_reason(dispatch))
                continue
            # The app answered (a success, or a refusal of this item): it is up.
            dispatch.consecutive_failures = 0
            dispatch.send_window = min(window_of(dispatch) + 1, WINDOW_MAX)
            if each.kind == SUCCESS:
                dispatch.last_success_at = now
            if dispatch.circuit == Circuit.HALF_OPEN:
                dispatch.probe_successes += 1
                if dispatch.probe_successes >= settings.BREAKER_CLOSE_AFTER:
                    _close(channel, dispatch, now)
        _save(dispatch, now, channel)


def _learn(channel: Channel, dispatch: ChannelDispatch, now: dt.datetime) -> None:
    """A 429, the first of a hold: the app gets less from now on.

    What the app took lately (`took_lately`) is the lesson; at a later 429 (sent at the learned
    rate), the learned rate if that is less. Either way THROTTLE_LEARN_PERCENT of it: a rate
    just at the app's limit would meet it again at once."""
    learned = learned_rate(channel, dispatch, now)
    took = took_lately(dispatch, now)
    known = took if learned is None else min(learned, took or learned)
    if channel.rate_limit is not None:
        known = min(known, channel.rate_limit) if known else channel.rate_limit
    if known < 1.0:
        return  # too little sent to learn a rate from: the hold alone slows it
    rate = max(known * settings.THROTTLE_LEARN_PERCENT / 100, 0.1)
    if dispatch.learned_rate is None:
        logger.warning(
            "channel %s: the app asked to wait at about %.1f attempts/s; sending %.1f/s",
            channel.pk,
            known,
            rate,
        )
    dispatch.learned_rate, dispatch.learned_at = rate, now


def took_lately(dispatch: ChannelDispatch, now: dt.datetime) -> float:
    """The attempts a second the app took lately: those sent less those it refused (both
    counted as they happen: an app's answers may lag its 429s), or those it answered, if more
    (the attempts sent just before a 429 may be refused after it)."""
    sent_less_refused = rate_lately(dispatch, "sent", now) - rate_lately(dispatch, "refused", now)
    return max(sent_less_refused, rate_lately(dispatch, "answered", now))


def _trips(dispatch: ChannelDispatch) -> bool:
    if dispatch.consecutive_failures >= settings.BREAKER_FAILURES:
        return True
    return (
        dispatch.window_attempts >= settings.BREAKER_MIN_VOLUME
        and dispatch.window_failures >= settings.BREAKER_RATIO * dispatch.window_attempts
    )


def _trip_reason(dispatch: ChannelDispatch) -> str:
    if dispatch.consecutive_failures >= settings.BREAKER_FAILURES:
        return f"{dispatch.consecutive_failures} failures in a row"
    return (
        f"{dispatch.window_failures} of {dispatch.window_attempts} attempts failed in "
        f"{settings.BREAKER_WINDOW_SECONDS:g} s"
    )


def _open(channel: Channel, dispatch: ChannelDispatch, now: dt.datetime, *, reason: str) -> None:
    again = dispatch.circuit == Circuit.HALF_OPEN
    cool_down = (
        min(dispatch.cool_down * 2, settings.BREAKER_COOL_DOWN_MAX)
        if again and dispatch.cool_down
        else settings.BREAKER_COOL_DOWN_MIN
    )
    dispatch.circuit, dispatch.circuit_since, dispatch.cool_down = Circuit.OPEN, now, cool_down
    dispatch.next_probe_at = now + dt.timedelta(seconds=cool_down)
    dispatch.outage_since = dispatch.outage_since or now
    dispatch.probe_successes = 0
    dispatch.recovering_since = None
    logger.warning(
        "channel %s: circuit opened (%s); next probe in %s s", channel.pk, reason, cool_down
    )
    _event(channel, OPENED, now, reason=reason, next_probe_at=dispatch.next_probe_at.isoformat())


def _close(channel: Channel, dispatch: ChannelDispatch, now: dt.datetime) -> None:
    outage = (now - dispatch.outage_since).total_seconds() if dispatch.outage_since else 0.0
    dispatch.circuit, dispatch.circuit_since = Circuit.CLOSED, now
    dispatch.outage_since, dispatch.next_probe_at, dispatch.cool_down = None, None, 0
    dispatch.consecutive_failures = dispatch.probe_successes = 0
    dispatch.window_started_at, dispatch.window_attempts, dispatch.window_failures = now, 0, 0
    dispatch.recovering_since, dispatch.tokens_at, dispatch.send_window = now, None, 0
    logger.warning("channel %s: circuit closed after %.0f s; draining", channel.pk, outage)
    _event(channel, CLOSED, now, outage_seconds=round(outage, 3))


def _disable_after() -> dt.timedelta:
    return dt.timedelta(days=settings.CHANNEL_DISABLE_AFTER_DAYS)


def _disable(channel: Channel, dispatch: ChannelDispatch, now: dt.datetime) -> None:
    dispatch.disabled_at = now
    logger.warning(
        "channel %s: disabled after its circuit stayed open since %s",
        channel.pk,
        dispatch.outage_since.isoformat(),
    )
    _event(channel, DISABLED, now, open_since=dispatch.outage_since.isoformat())
    _save(dispatch, now, channel)


def _event(channel: Channel, kind: str, now: dt.datetime, **details) -> None:
    EngineEvent.objects.create(
        key=f"{kind}:{channel.pk}:{now.isoformat()}",
        kind=kind,
        channel=channel,
        next_delivery_at=now,
        payload={"event": kind, "channel": channel.pk, "at": now.isoformat(), **details},
    )


# --- by hand --------------------------------------------------------------------------------


def pause(channel: Channel, *, by: str, now: dt.datetime | None = None) -> ChannelDispatch:
    """Holds the channel's dispatch until `resume`: nothing is sent, retry counts untouched."""
    now = now or timezone.now()
    with transaction.atomic():
        dispatch = locked(channel.pk)
        if dispatch.paused_at is None:
            dispatch.paused_at, dispatch.paused_by = now, by
            logger.warning("channel %s: paused by %s", channel.pk, by)
        _save(dispatch, now)
    return dispatch


def resume(channel: Channel, *, by: str, now: dt.datetime | None = None) -> ChannelDispatch:
    """Lifts a pause (and a disabling): the backlog drains from a slow start; an open circuit
    probes at once."""
    now = now or timezone.now()
    with transaction.atomic():
        dispatch = locked(channel.pk)
        if dispatch.paused_at or dispatch.disabled_at:
            logger.warning("channel %s: resumed by %s", channel.pk, by)
        dispatch.paused_at, dispatch.paused_by, dispatch.disabled_at = None, "", None
        if dispatch.circuit == Circuit.OPEN:
            dispatch.outage_since, dispatch.next_probe_at = now, now
        else:
            dispatch.recovering_since, dispatch.tokens_at = now, None
        _save(dispatch, now)
    return dispatch
