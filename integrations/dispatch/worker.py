"""The worker: claims due failed integrations, dispatches them to their channel apps, records
the outcomes; and keeps the rest of the life cycle moving (expiry, retention, events, counts).

Several workers may run against one PostgreSQL database, on as many machines: a claim takes
due records with `SELECT ... FOR UPDATE SKIP LOCKED`, so no two workers take the same record,
and leases them for `lease` seconds. A worker that dies leaves its leases to lapse; the records
are then due again and another worker takes them. An outcome is written only while the lease
is still the worker's own, so a late answer never counts twice. Exhaustion events are claimed
and leased the same way (see `deliver_events`). On SQLite one worker runs.

Attempts and events go out through one HTTP client, `Poster` (bench/dispatch --ab compares it
with httpx and urllib3).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import os
import random
import socket
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import orjson
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Exists, F, Max, OuterRef
from django.utils import timezone

from common.database import is_postgresql
from common.postgresql.base import answers_within
from integrations.choices import AttemptOutcome, Resolution, State
from integrations.counting import counts
from integrations.dispatch import protection
from integrations.dispatch.endpoints import answer_excerpt
from integrations.dispatch.poster import Poster, PostFailed, PostRefused, PostTimeout
from integrations.dispatch.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature_header,
    signing_secrets,
)
from integrations.lifecycle import policies, transitions
from integrations.lifecycle.states import timed_states_q
from integrations.models import (
    Channel,
    ChannelDispatch,
    EngineEvent,
    FailedIntegration,
    RetryAttempt,
    WorkerHeartbeat,
)
from integrations.operations import bulk as bulk_actions
from integrations.records import idempotency
from integrations.records.representation import failed_integration_data
from ops import metrics
from ops.logs import log_context

logger = logging.getLogger("integrations.dispatch.worker")

IDEMPOTENCY_HEADER = "Idempotency-Key"
USER_AGENT = "failed-integrations-retry/1"
EXHAUSTED = "failed_integration.exhausted"
# How often a worker records that it is alive, and how long a crashed one's row is kept.
HEARTBEAT_SECONDS = 10.0
# After an attempt ends, how long the worker waits for others to end with it, so that their
# outcomes are written together.
GATHER_SECONDS = 0.02
# How soon a worker whose channels were all at a limit of what is in flight (the send window,
# the concurrency cap) looks again; one waiting for a rate's tokens looks when they are due.
LIMITED_WAIT = 0.05
HEARTBEATS_KEPT = dt.timedelta(days=1)


@dataclass
class Claimed:
    record: FailedIntegration
    endpoint: str
    secrets: tuple[str, ...]  # that sign its request (signing.signing_secrets)
    attempt: RetryAttempt | None = None
    send_at: float = 0.0  # time.monotonic() when its rate's token comes (0: at once)
    spacing: float = 0.0  # seconds a token takes at its channel's rate (0: no rate)


@dataclass
class WorkerConfig:
    concurrency: int = 8
    batch: int = 32
    lease: float = 60.0
    timeout: float = 10.0
    poll: float = 1.0
    housekeeping_every: float = 30.0
    name: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    )


class Worker:
    def __init__(self, config: WorkerConfig):
        self.config = config
        self.stopping = threading.Event()
        self.poster = Poster(timeout=config.timeout)
        self.pool = ThreadPoolExecutor(max_workers=config.concurrency)
        self.last_housekeeping = 0.0
        self.housekeeper: threading.Thread | None = None
        self.housekeeping_beside = False  # in a thread of its own (see start_housekeeping)
        self.last_beat = -math.inf
        # When (time.monotonic()) a channel at a limit may take more (None: none was), and the
        # channels that wait for their rate's tokens.
        self.look_at: float | None = None
        self.waiting_for_tokens: set[int] = set()
        # The last send of each rate-limited channel from this worker (time.monotonic()).
        self.last_paced: dict[int, float] = {}
        self.pace_lock = threading.Lock()

    # --- the loop ---------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> int:
        """Works until stopped (or, with `once`, until nothing is due); answers the number of
        attempts made. Each answer of the database is waited for at most DB_ANSWER_TIMEOUT:
        a database gone silent ends the worker with its error (its service restarts it)
        rather than holding it, its leases lapsing meanwhile.
        """
        with answers_within(settings.DB_ANSWER_TIMEOUT):
            return self._run(once=once)

    def _run(self, *, once: bool) -> int:
        """The worker's loop.

        Attempts are a pipeline, not batches: up to `batch` are in flight, each outcome is
        written as soon as it is in (with the others that came in meanwhile), and the room it
        leaves is claimed again. So a slow channel app holds only its own attempts, never the
        outcomes or the next claims of other channels. Stopped, the worker claims nothing more,
        finishes what is in flight, and ends."""
        made = 0
        flying: dict[Future, Claimed] = {}
        # A worker that runs until stopped keeps house beside its attempts; one that runs
        # once (a command, a test) in its own loop and transaction, as before it ends.
        self.housekeeping_beside = not once and is_postgresql()
        while True:
            stopping = self.stopping.is_set()
            if stopping and not flying:
                break
            self.beat()
            if not connection.in_atomic_block:
                close_old_connections()  # as a request would: a lost connection is replaced
            if not stopping and (
                time.monotonic() - self.last_housekeeping >= self.config.housekeeping_every
            ):
                self.start_housekeeping()
            claimed: list[Claimed] = []
            room = self.config.batch - len(flying)
            # Claims of half the batch at least (each claim is a few statements), but a rate's
            # tokens are taken when they are due, whatever the room: a rate-limited app is not
            # to wait for the other channels' backlog.
            whole = room >= self.config.batch / 2 or not flying
            asked = not stopping and room > 0 and (whole or self.tokens_due())
            # Nothing to take while nothing was in flight: nothing is due (for `once`).
            nothing_due = asked and not flying
            if asked:
                claimed = self.claim(limit=room, only=None if whole else self.waiting_for_tokens)
                if claimed:
                    start_attempts(claimed, worker=self.config.name)
                    for item in claimed:
                        flying[self.pool.submit(self.send, item)] = item
            made += self._finish_arrived(flying, wait_for=0.0 if claimed else self.next_look())
            # Queued bulk actions get a turn of a couple of seconds between claims.
            acted = bulk_actions.work_queued(worker=self.config.name) if not stopping else 0
            # `once`: until nothing is due (held records are not: their channel waits).
            idle = not claimed and not flying and not acted
            if once and nothing_due and idle and self.look_at is None:
                break
            if idle and not stopping:
                self.stopping.wait(self.next_look())
        self.pool.shutdown(wait=True)
        if self.housekeeper is not None:
            self.housekeeper.join()
        self.poster.close()
        WorkerHeartbeat.objects.filter(name=self.config.name).delete()  # stopped, and said so
        return made

    def next_look(self) -> float:
        """How long the worker may wait before it claims again: until a limited channel may
        take more (its rate's next tokens, or LIMITED_WAIT for room in its window), or the
        poll."""
        if self.look_at is None:
            return self.config.poll
        return min(self.config.poll, max(self.look_at - time.monotonic(), 0.0))

    def tokens_due(self) -> bool:
        """Whether a channel that waited for its rate's tokens has them now."""
        return bool(self.waiting_for_tokens) and self.next_look() == 0.0

    def limited(
        self, channel: Channel, dispatch: ChannelDispatch, now: dt.datetime, *, tokens=False
    ) -> None:
        """Notes that `channel` may take no more now (its rate's tokens, or room in its
        window), and when it may; with `tokens`, only if it waits for its rate's tokens."""
        seconds = protection.token_wait(channel, dispatch, now)
        if tokens and not seconds:
            return
        if seconds:
            self.waiting_for_tokens.add(channel.pk)
        at = time.monotonic() + (seconds or LIMITED_WAIT)
        self.look_at = at if self.look_at is None else min(self.look_at, at)

    def beat(self) -> None:
        """Records that this worker is alive, at most every HEARTBEAT_SECONDS."""
        if time.monotonic() - self.last_beat < HEARTBEAT_SECONDS:
            return
        self.last_beat = time.monotonic()
        now = timezone.now()
        WorkerHeartbeat.objects.update_or_create(
            name=self.config.name,
            defaults={"seen_at": now},
            create_defaults={"started_at": now, "seen_at": now},
        )

    def stop(self) -> None:
        self.stopping.set()

    def start_housekeeping(self) -> None:
        """Housekeeping, on PostgreSQL in a thread of its own (with its own connection) unless
        the worker runs once: a compaction or a vacuum that takes long must not hold the
        outcomes of the attempts in flight, whose leases would lapse into a second delivery.
        One run at a time."""
        self.last_housekeeping = time.monotonic()
        if not self.housekeeping_beside:
            self.housekeeping()  # SQLite (one connection, one writer), or `once`
            return
        if self.housekeeper is not None and self.housekeeper.is_alive():
            return
        self.housekeeper = threading.Thread(
            target=self._housekeeping_thread, name="housekeeping", daemon=True
        )
        self.housekeeper.start()

    def _housekeeping_thread(self) -> None:
        try:
            self.housekeeping()
        except Exception:
            logger.exception(
                "housekeeping failed; it runs again in %s s", self.config.housekeeping_every
            )
        finally:
            connection.close()  # this thread's own

    @answers_within(None)  # a compaction or a vacuum takes as long as it takes
    def housekeeping(self) -> None:
        self.last_housekeeping = time.monotonic()
        expire_records()
        purge_records()
        bulk_actions.purge()
        idempotency.purge()
        WorkerHeartbeat.objects.filter(seen_at__lt=timezone.now() - HEARTBEATS_KEPT).delete()
        deliver_events(self.poster, lease=self.config.lease)
        if is_postgresql():
            counts.compact()
            counts.vacuum()

    # --- one batch --------------------------------------------------------------------------

    def claim(self, limit: int | None = None, only: set[int] | None = None) -> list[Claimed]:
        """Leases up to `batch` due records to this worker (or `limit`; of the channels `only`,
        if given), fairly between channels (each gets its share of the batch, in a new order
        every time), each channel within what its protection allows now
        (dispatch/protection.py)."""
        now = timezone.now()
        lease_until = now + dt.timedelta(seconds=self.config.lease)
        # Due records waited for a limit (rate, window, in flight): noted afresh.
        self.look_at, self.waiting_for_tokens = None, set()
        # One statement finds the channels with due records, whatever their number, and what
        # each has in flight; those whose app waits (a pause, an open circuit, a Retry-After)
        # are passed over without a lock.
        channels = []
        for channel in sendable_channels(now):
            if only is not None and channel.pk not in only:
                continue
            dispatch = getattr(channel, "dispatch", None) or NEW
            why = protection.waiting(channel, dispatch, now)
            if why is None:
                channels.append(channel)
            elif why == protection.LIMITED:
                self.limited(channel, dispatch, now)
        random.shuffle(channels)
        pacing: dict[int, tuple[float, float]] = {}  # record: (send at, spacing)
        most = self.config.batch if limit is None else limit
        for index, channel in enumerate(channels):
            room = most - len(pacing)
            if room <= 0:
                break
            share = math.ceil(room / (len(channels) - index))
            pacing |= self._claim_channel(channel, want=share, now=now, until=lease_until)
        if not pacing:
            return []
        records = FailedIntegration.objects.filter(pk__in=pacing).select_related("channel")
        return [
            Claimed(
                record=r,
                endpoint=r.channel.retry_endpoint,
                secrets=signing_secrets(r.channel),
                send_at=pacing[r.pk][0],
                spacing=pacing[r.pk][1],
            )
            for r in records
        ]

    def _claim_channel(
        self, channel: Channel, *, want: int, now: dt.datetime, until: dt.datetime
    ) -> dict[int, tuple[float, float]]:
        """Leases up to `want` of the channel's due records, oldest first, within what its
        protection allows; answers when to send each (time.monotonic()) and the time a token
        of its rate takes (0: no rate)."""
        due = due_records(now).filter(channel=channel).order_by("next_retry_at")
        with transaction.atomic():
            dispatch = protection.locked(channel.pk)
            # The bucket's clock is read under the lock: the claim's own may be behind another
            # worker's, which took the tokens since.
            now, monotonic = timezone.now(), time.monotonic()
            # What is in flight now, as the lock sees it (a count read before it may be behind
            # another worker's claim).
            in_flight = leased_records(now).filter(channel=channel).count()
            allowed = protection.allowance(
                channel, dispatch, in_flight=in_flight, want=want, now=now
            )
            ids: list[int] = []
            if allowed <= 0 and protection.hold_of(dispatch, now) is None:
                self.limited(channel, dispatch, now)
            if allowed > 0:
                if connection.features.has_select_for_update_skip_locked:
                    due = due.select_for_update(skip_locked=True)
                ids = list(due.values_list("pk", flat=True)[:allowed])
                if ids:
                    FailedIntegration.objects.filter(pk__in=ids).update(
                        lease_owner=self.config.name, lease_expires_at=until
                    )
            waits = protection.taken(channel, dispatch, len(ids), now)
            if ids and len(ids) < want:
                self.limited(channel, dispatch, now, tokens=True)  # the next tokens are awaited
            rate = protection.effective_rate(channel, dispatch, now) if ids else None
        spacing = 1.0 / rate if rate else 0.0
        return {pk: (monotonic + wait, spacing) for pk, wait in zip(ids, waits, strict=True)}

    def _finish_arrived(self, flying: dict[Future, Claimed], *, wait_for: float) -> int:
        """Writes the outcomes of the attempts that have ended (waiting up to `wait_for` seconds
        for the first, when none has), in a few statements for all of them; answers how many."""
        if not flying:
            return 0
        done, pending = wait(list(flying), timeout=wait_for, return_when=FIRST_COMPLETED)
        if not done:
            return 0
        if pending:  # the others that end within a moment go in the same statements
            wait(pending, timeout=GATHER_SECONDS)
        ended = [future for future in flying if future.done()]
        items = [flying.pop(future) for future in ended]
        finish_attempts(items, [future.result() for future in ended], worker=self.config.name)
        return len(items)

    def dispatch(self, claimed: list[Claimed]) -> int:
        """Attempts every claimed record, concurrently, and records the outcomes (one batch, as
        the tests and the commands drive it; `run` pipelines its attempts)."""
        if not claimed:
            return 0
        start_attempts(claimed, worker=self.config.name)
        results = list(self.pool.map(self.send, claimed))
        finish_attempts(claimed, results, worker=self.config.name)
        return len(claimed)

    def paced(self, item: Claimed) -> float:
        """When to send `item` (time.monotonic()): when its rate's token comes, and, from this
        worker, at least a token's time after the last one to its channel, so that attempts
        claimed together but started late (a busy machine) do not go all at once."""
        if not item.spacing:
            return item.send_at
        with self.pace_lock:
            last = self.last_paced.get(item.record.channel_id, -math.inf)
            at = max(item.send_at, last + item.spacing)
            self.last_paced[item.record.channel_id] = at
        return at

    def send(self, item: Claimed) -> AttemptResult:
        record, attempt = item.record, item.attempt
        early = self.paced(item) - time.monotonic()
        if early > 0:
            time.sleep(early)  # its rate's token comes then
        data = failed_integration_data(record, has_endpoint=True)
        body = orjson.dumps(
            {
                "event": "failed_integration.retry",
                "attempt": attempt.number,
                "idempotency_key": attempt.idempotency_key,
                "failed_integration": data,
            }
        )
        headers = signed_headers(body, item.secrets, idempotency_key=attempt.idempotency_key)
        with log_context(
            idempotency_key=attempt.idempotency_key,
            channel=record.channel_id,
            worker=self.config.name,
        ):
            started = time.perf_counter()
            result = post_outcome(self.poster, item.endpoint, body, headers)
            seconds = time.perf_counter() - started
            logger.info(
                "attempt %s of failed integration %s (channel %s): %s%s in %.0f ms",
                attempt.number,
                record.pk,
                record.channel_id,
                result.outcome,
                f" (HTTP {result.http_status})" if result.http_status else "",
                seconds * 1000,
            )
        return dataclasses.replace(result, seconds=seconds)


NEW = ChannelDispatch()  # a channel's dispatch before its first claim: nothing to wait for


def due_records(now: dt.datetime):
    """The records a worker may lease now, whatever their channel's app allows: those in the
    state `due` (lifecycle.states): scheduled for now or before, active, not parked, not leased,
    not expired, with retries left or an attempt asked for by hand."""
    due = timed_states_q(now=now, has_endpoint=True, held=False)[State.DUE]
    return FailedIntegration.objects.filter(due)


def leased_records(now: dt.datetime):
    """The records in flight: leased, the lease not yet lapsed."""
    return FailedIntegration.objects.filter(is_active=True, lease_expires_at__gt=now)


def sendable_channels(now: dt.datetime) -> list[Channel]:
    """The active channels with an endpoint and due records, each with its dispatch row: one
    statement, an index probe per channel."""
    return list(
        Channel.objects.filter(is_active=True)
        .exclude(retry_endpoint="")
        .filter(Exists(due_records(now).filter(channel=OuterRef("pk"))))
        .select_related("dispatch")
    )


def signed_headers(body: bytes, secrets: tuple[str, ...], *, idempotency_key: str) -> dict:
    """The headers of a request to a channel app: JSON, the time, the key, the signatures."""
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        TIMESTAMP_HEADER: timestamp,
        IDEMPOTENCY_HEADER: idempotency_key,
    }
    if secrets:
        headers[SIGNATURE_HEADER] = signature_header(secrets, timestamp, body)
    return headers


# Errors are kept to this length (a channel app's answer can be of any size).
ERROR_TEXT_LIMIT = 2000


def truncate(text: str, limit: int = ERROR_TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class AttemptResult:
    outcome: str
    http_status: int | None
    error: str
    seconds: float | None = None  # the POST's, when it was made
    retry_after: str | None = None  # the app's Retry-After header


def post_outcome(poster: Poster, url: str, body: bytes, headers: dict[str, str]) -> AttemptResult:
    """One POST, its answer or its failure as an outcome with the error text to record."""
    try:
        answer = poster.post(url, body, headers)
    except PostTimeout as exc:
        return AttemptResult(AttemptOutcome.TIMEOUT, None, f"timed out: {exc}")
    except PostRefused as exc:
        return AttemptResult(AttemptOutcome.REFUSED, None, f"connection failed: {exc}")
    except PostFailed as exc:
        return AttemptResult(AttemptOutcome.ERROR, None, str(exc))
    if 200 <= answer.status < 300:
        return AttemptResult(AttemptOutcome.SUCCESS, answer.status, "")
    return AttemptResult(
        AttemptOutcome.HTTP_ERROR,
        answer.status,
        f"HTTP {answer.status}: {answer_excerpt(answer.text)}",
        retry_after=answer.retry_after,
    )


def start_attempts(claimed: list[Claimed], *, worker: str) -> None:
    """Records the attempts about to be made (numbered per record), in one statement."""
    numbers = dict(
        RetryAttempt.objects.filter(failed_integration__in=[c.record.pk for c in claimed])
        .values("failed_integration")
        .annotate(last=Max("number"))
        .values_list("failed_integration", "last")
    )
    now = timezone.now()
    attempts = [
        RetryAttempt(
            failed_integration=item.record,
            number=numbers.get(item.record.pk, 0) + 1,
            idempotency_key=uuid.uuid4().hex,
            worker=worker,
            started_at=now,
        )
        for item in claimed
    ]
    RetryAttempt.objects.bulk_create(attempts)
    for item, attempt in zip(claimed, attempts, strict=True):
        item.attempt = attempt


def finish_attempts(claimed: list[Claimed], results: list[AttemptResult], *, worker: str) -> None:
    """Writes the outcomes to the records this worker still holds (a record whose lease lapsed
    and was taken by another worker keeps that worker's outcome: `lease_lost` here)."""
    now = timezone.now()
    channel_policies: dict[int, dict[str, policies.Policy]] = {}
    said = [
        protection.verdict(result.outcome, result.http_status, result.retry_after, now=now)
        for result in results
    ]
    # The channels whose answers say to send less (the app's failures, a wait): their dispatch
    # rows are locked first (in the claim's order of locks: dispatch, then records), so that
    # their leases end and the breaker learns of their answers in one commit, and no claim sees
    # the attempts over before it sees what they said (five refusals would otherwise leave the
    # window empty and the circuit closed, and another worker would send five more). Answers
    # that say all is well are recorded after the commit, holding no claim of their channel
    # meanwhile: a claim that sees their leases end first sends no more than before them.
    guarded = {
        item.record.channel_id
        for item, verdict in zip(claimed, said, strict=True)
        if verdict.kind in (protection.APP_FAILURE, protection.THROTTLED)
    }
    verdicts: dict[int, list[protection.Verdict]] = {}
    with transaction.atomic():
        for channel_id in sorted(guarded):
            protection.locked(channel_id)
        # The fields an outcome is derived from, as they are now under the rows' locks: a
        # PATCH during the attempt (lowering max_retry_count, say) is not undone by a schedule
        # derived from the claim's read. An attempt holds its record while the record's lease
        # is the one its claim wrote: a lease that lapsed and was claimed again (by another
        # worker, or by this one while the outcome waited) belongs to the later claim.
        held = {
            (row["pk"], row["lease_expires_at"]): row
            for row in FailedIntegration.objects.select_for_update()
            .filter(pk__in=[c.record.pk for c in claimed], lease_owner=worker, is_active=True)
            .values("pk", "lease_expires_at", *OUTCOME_INPUTS)
        }
        resolved, failed, exhausted = [], [], []
        for item, result, verdict in zip(claimed, results, said, strict=True):
            record, attempt = item.record, item.attempt
            attempt.finished_at = now
            attempt.http_status = result.http_status
            attempt.error = truncate(result.error)
            lease = held.get((record.pk, record.lease_expires_at))
            if lease is None:
                attempt.outcome = AttemptOutcome.LEASE_LOST
                logger.warning(
                    "attempt %s of %s: the lease lapsed before the answer; ignored",
                    attempt.number,
                    record.pk,
                    extra={"idempotency_key": attempt.idempotency_key},
                )
                continue
            attempt.outcome = result.outcome
            for name in OUTCOME_INPUTS:
                setattr(record, name, lease[name])
            record.lease_owner, record.lease_expires_at = "", None
            record.last_attempt_at = record.modified_date = now
            verdicts.setdefault(record.channel_id, []).append(verdict)
            if result.outcome == AttemptOutcome.SUCCESS:
                resolved.append(record.pk)
                continue
            if verdict.kind == protection.THROTTLED:
                # The app asked to wait: not an attempt of the record (its count and schedule
                # stay; the channel is held until the wait is over).
                attempt.outcome = AttemptOutcome.THROTTLED
                record.last_error = attempt.error
                failed.append(record)
                continue
            if record.channel_id not in channel_policies:
                channel_policies[record.channel_id] = policies.policies_for(record.channel_id)
            record.retry_count += 1
            record.retry_by_hand = False  # the attempt asked for is made
            record.last_error = attempt.error
            record.next_retry_at = policies.next_retry_at(
                record,
                channel_policies[record.channel_id][record.reason_type],
                now=now,
                attempts=attempt.number,
            )
            failed.append(record)
            if record.retry_count >= record.max_retry_count:
                exhausted.append(record)
        if resolved:
            FailedIntegration.objects.filter(pk__in=resolved).update(
                **transitions.ended(Resolution.RESOLVED, now=now),
                last_attempt_at=now,
                last_error="",
                lease_owner="",
                lease_expires_at=None,
            )
        if failed:
            write_failures(failed)
        # One statement per distinct outcome (a batch mostly has one or two): cheaper to build
        # and to run than an update of each row by its own CASE branch.
        outcomes: dict[tuple, list[int]] = {}
        for item in claimed:
            attempt = item.attempt
            key = (attempt.outcome, attempt.http_status, attempt.error)
            outcomes.setdefault(key, []).append(attempt.pk)
        for (outcome, http_status, error), ids in outcomes.items():
            RetryAttempt.objects.filter(pk__in=ids).update(
                finished_at=now, outcome=outcome, http_status=http_status, error=error
            )
        if exhausted:
            record_exhaustion(exhausted, now=now)
        for channel_id in guarded & verdicts.keys():
            protection.record_verdicts(channel_id, verdicts[channel_id], now=now)
    for channel_id in verdicts.keys() - guarded:
        protection.record_verdicts(channel_id, verdicts[channel_id], now=now)
    for item, result in zip(claimed, results, strict=True):
        metrics.attempt_finished(item.record.channel_id, item.attempt.outcome, result.seconds)
    for record in exhausted:
        metrics.exhausted(record.channel_id)


# What an attempt's outcome is derived from, besides the answer and the channel's policies.
OUTCOME_INPUTS = (
    "retry_count",
    "max_retry_count",
    "retry_interval",
    "reason_type",
    "retry_by_hand",
)

FAILURE_FIELDS = (
    "retry_count",
    "retry_by_hand",
    "last_attempt_at",
    "last_error",
    "next_retry_at",
    "lease_owner",
    "lease_expires_at",
    "modified_date",
)

# The failed attempts' records, each with its own count, error and next attempt, in one
# statement (Django's bulk_update builds a CASE per field and row: most of a batch's cost).
WRITE_FAILURES_SQL = """
UPDATE integrations_failedintegration AS f
SET retry_count = v.retry_count, retry_by_hand = v.retry_by_hand, last_error = v.last_error,
    next_retry_at = v.next_retry_at, last_attempt_at = v.at, modified_date = v.at,
    lease_owner = '', lease_expires_at = NULL
FROM (VALUES {rows}) AS v(id, retry_count, retry_by_hand, last_error, next_retry_at, at)
WHERE f.id = v.id
"""


def write_failures(records: list[FailedIntegration]) -> None:
    if not is_postgresql():
        FailedIntegration.objects.bulk_update(records, FAILURE_FIELDS)
        return
    row = "(%s::bigint, %s::integer, %s::boolean, %s::text, %s::timestamptz, %s::timestamptz)"
    params = []
    for record in records:
        params += [
            record.pk,
            record.retry_count,
            record.retry_by_hand,
            record.last_error,
            record.next_retry_at,
            record.last_attempt_at,
        ]
    with connection.cursor() as cursor:
        cursor.execute(WRITE_FAILURES_SQL.format(rows=", ".join([row] * len(records))), params)


def record_exhaustion(records: list[FailedIntegration], *, now: dt.datetime) -> None:
    """Logs the exhaustions and records their events (once per record and retry count)."""
    for record in records:
        logger.warning(
            "failed integration %s (channel %s, %s) exhausted: retry_count %s of %s",
            record.pk,
            record.channel_id,
            record.reason_type,
            record.retry_count,
            record.max_retry_count,
        )
    EngineEvent.objects.bulk_create(
        [exhaustion_event(record, now=now) for record in records], ignore_conflicts=True
    )


def exhaustion_event(record: FailedIntegration, *, now: dt.datetime) -> EngineEvent:
    return EngineEvent(
        key=f"exhausted:{record.pk}:{record.retry_count}",
        kind=EXHAUSTED,
        failed_integration_id=record.pk,
        channel_id=record.channel_id,
        next_delivery_at=now,
        payload={
            "event": EXHAUSTED,
            "failed_integration": record.pk,
            "channel": record.channel_id,
            "content_type": record.content_type_id,
            "object_id": record.object_id,
            "reason_type": record.reason_type,
            "retry_count": record.retry_count,
            "max_retry_count": record.max_retry_count,
            "at": now.isoformat(),
        },
    )


# --- housekeeping ---------------------------------------------------------------------------

BATCH = 1000


def expire_records(*, now: dt.datetime | None = None, batch: int = BATCH) -> int:
    """Deactivates active records past their expiration date; answers how many."""
    now = now or timezone.now()
    total = 0
    while True:
        ids = list(
            FailedIntegration.objects.filter(is_active=True, expiration_date__lte=now).values_list(
                "pk", flat=True
            )[:batch]
        )
        if not ids:
            return total
        total += transitions.expire(ids, now=now)


def purge_records(*, now: dt.datetime | None = None, batch: int = BATCH) -> int:
    """Deletes inactive records unchanged for longer than the retention; answers how many."""
    now = now or timezone.now()
    before = now - dt.timedelta(days=settings.RETENTION_DAYS)
    total = 0
    while True:
        ids = list(
            FailedIntegration.objects.filter(is_active=False, modified_date__lt=before).values_list(
                "pk", flat=True
            )[:batch]
        )
        if not ids:
            return total
        total += (
            FailedIntegration.objects.filter(pk__in=ids, is_active=False)
            .delete()[1]
            .get("integrations.FailedIntegration", 0)
        )


EVENT_BATCH = 100


def deliver_events(
    poster: Poster,
    *,
    now: dt.datetime | None = None,
    lease: float | None = None,
    batch: int = EVENT_BATCH,
) -> int:
    """Sends due events to EXHAUSTION_WEBHOOK_URL (when set; else they are only logged);
    retries with a growing wait. Answers how many were delivered.

    Several workers may deliver at once. Each claims the events it takes, in the transaction
    that locks them, by moving their next delivery `lease` seconds on: no other worker takes
    them while it sends, and no transaction stays open over the HTTP requests. A worker that
    dies leaves its claim to lapse; the events are then due again and another worker sends
    them (at least once: the event's key goes as its Idempotency-Key). Each outcome is written
    only if the claim is still the worker's own."""
    now = now or timezone.now()
    url = settings.EXHAUSTION_WEBHOOK_URL
    lease = lease or settings.RETRY_LEASE_SECONDS
    claimed_until = now + dt.timedelta(seconds=lease)
    # The claim is over `lease` seconds from now whatever `now` says; a POST is begun only if
    # it can end, answered or timed out, before another worker may take the event (the first
    # always is, so that a lease shorter than the timeout still makes progress).
    last_start = time.monotonic() + lease - poster.timeout
    with transaction.atomic():
        due = EngineEvent.objects.filter(
            delivered_at__isnull=True, next_delivery_at__lte=now
        ).order_by("next_delivery_at", "pk")
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        events = list(due[:batch])
        if not events:
            return 0
        EngineEvent.objects.filter(pk__in=[event.pk for event in events]).update(
            next_delivery_at=claimed_until
        )
    still_claimed = EngineEvent.objects.filter(
        delivered_at__isnull=True, next_delivery_at=claimed_until
    )
    delivered = 0
    for index, event in enumerate(events):
        if index and url and time.monotonic() > last_start:
            # Handed back rather than left to lapse: due again for any worker at once.
            unsent = [later.pk for later in events[index:]]
            still_claimed.filter(pk__in=unsent).update(next_delivery_at=now)
            break
        error = ""
        if url:
            body = orjson.dumps(event.payload)
            secret = settings.EVENTS_SIGNING_SECRET
            headers = signed_headers(body, (secret,) if secret else (), idempotency_key=event.key)
            result = post_outcome(poster, url, body, headers)
            error = "" if result.outcome == AttemptOutcome.SUCCESS else result.error
        if error:
            wait = min(2 ** (event.delivery_attempts + 1), 3600)
            still_claimed.filter(pk=event.pk).update(
                delivery_attempts=F("delivery_attempts") + 1,
                last_error=truncate(error),
                next_delivery_at=now + dt.timedelta(seconds=wait),
            )
        else:
            # Received: recorded even when the claim lapsed meanwhile, so that no worker
            # sends it again.
            delivered += EngineEvent.objects.filter(pk=event.pk, delivered_at__isnull=True).update(
                delivery_attempts=F("delivery_attempts") + 1, delivered_at=now
            )
    return delivered


def release_leases(worker: str) -> int:
    """Gives back what a stopping worker holds, so that others may take it at once."""
    return FailedIntegration.objects.filter(lease_owner=worker).update(
        lease_owner="", lease_expires_at=None
    )
