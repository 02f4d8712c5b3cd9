"""The service's Prometheus metrics, and their exposition at `GET /metrics`.

Counters and histograms are kept by the process that observes them (the API's workers, the
retry workers). With `PROMETHEUS_MULTIPROC_DIR` set (to the same empty directory for every
process of one deployment; `manage.py serve` makes one), prometheus_client's multiprocess mode
adds up the values of every process in that directory, so a scrape of any API worker counts
them all. Without it (the tests, a single process) a scrape shows this process's values.

What the records are (failures by state and reason, the due backlog) is read at scrape time
from the counts the service keeps (`DatabaseCollector`): a scrape never counts rows.
"""

from __future__ import annotations

import os

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

# Seconds; an API request and an attempt of a channel app.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ATTEMPT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# A worker records its heartbeat every 10 s (dispatch.worker.HEARTBEAT_SECONDS).
ALIVE_WITHIN = 60.0

HTTP_REQUESTS = Counter(
    "fi_http_requests",
    "HTTP requests answered, by route (the URL pattern's name), method and status.",
    ["route", "method", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "fi_http_request_duration_seconds",
    "Time to answer an HTTP request (the body's streaming not included), by route and method.",
    ["route", "method"],
    buckets=REQUEST_BUCKETS,
)
ATTEMPTS = Counter(
    "fi_retry_attempts",
    "Retry attempts finished, by channel and outcome (success, http_error, timeout, refused, "
    "error, lease_lost, throttled).",
    ["channel", "outcome"],
)
ATTEMPT_SECONDS = Histogram(
    "fi_retry_attempt_duration_seconds",
    "Time of one attempt (the POST to the channel app and its answer), by channel.",
    ["channel"],
    buckets=ATTEMPT_BUCKETS,
)
EXHAUSTIONS = Counter("fi_exhaustions", "Records whose retries ran out, by channel.", ["channel"])
LEASES_LOST = Counter(
    "fi_leases_lost",
    "Attempts whose answer came after their lease lapsed (ignored), by channel.",
    ["channel"],
)


def request_answered(route: str, method: str, status: int, seconds: float) -> None:
    key = (route, method, status)
    children = _request_children.get(key)
    if children is None:
        # prometheus_client answers the same child for the same labels: asked once per key
        # (its lookup takes a lock; a read asks it on every request).
        children = (
            HTTP_REQUESTS.labels(route, method, str(status)),
            HTTP_REQUEST_SECONDS.labels(route, method),
        )
        _request_children[key] = children
    counter, histogram = children
    counter.inc()
    histogram.observe(seconds)


# (route, method, status) -> the children of HTTP_REQUESTS and HTTP_REQUEST_SECONDS. Routes are
# the URL patterns' names and statuses HTTP's, so it stays small.
_request_children: dict[tuple[str, str, int], tuple] = {}


def attempt_finished(channel_id: int, outcome: str, seconds: float | None) -> None:
    ATTEMPTS.labels(str(channel_id), outcome).inc()
    if seconds is not None:
        ATTEMPT_SECONDS.labels(str(channel_id)).observe(seconds)
    if outcome == "lease_lost":
        LEASES_LOST.labels(str(channel_id)).inc()


def exhausted(channel_id: int) -> None:
    EXHAUSTIONS.labels(str(channel_id)).inc()


class DatabaseCollector:
    """Gauges read from the database at scrape time, per channel: active failures by state
    and reason (the counts by state, see reads.selectors.counted_groups), the due backlog and
    the age of its oldest record (through the partial index of due records); and the retry
    workers' heartbeats (from the database, wherever the workers run)."""

    def collect(self):
        from django.http import QueryDict
        from django.utils import timezone

        from integrations.dispatch import protection
        from integrations.models import Channel, ChannelDispatch, WorkerHeartbeat
        from integrations.reads import selectors

        failures = GaugeMetricFamily(
            "fi_failures",
            "Active failed integrations, by channel, state and reason.",
            labels=["channel", "state", "reason_type"],
        )
        due = GaugeMetricFamily(
            "fi_due_backlog",
            "Records due for a retry now (sent or held), by channel.",
            labels=["channel"],
        )
        oldest = GaugeMetricFamily(
            "fi_oldest_due_age_seconds",
            "How long the oldest due record has been due (0: none due), by channel.",
            labels=["channel"],
        )
        circuit = GaugeMetricFamily(
            "fi_channel_circuit_open_seconds",
            "How long each channel app's circuit breaker has been open or half-open (0: closed).",
            labels=["channel"],
        )
        held = GaugeMetricFamily(
            "fi_channel_dispatch_held",
            "1 while nothing is sent to the channel app (circuit open, paused, disabled, or "
            "asked to wait), by channel and why.",
            labels=["channel", "reason"],
        )
        learned = GaugeMetricFamily(
            "fi_channel_learned_rate",
            "Attempts per second the channel app's 429s taught the engine (0: none): an app "
            "that limits what it takes.",
            labels=["channel"],
        )
        now = timezone.now()
        dispatches = {d.channel_id: d for d in ChannelDispatch.objects.all()}
        params = QueryDict("group_by=state,reason_type&is_active=true")
        for channel in Channel.objects.order_by("pk"):
            label = str(channel.pk)
            stats = selectors.failed_integration_stats(channel=channel, params=params)
            for row in stats["results"]:
                failures.add_metric([label, row["state"], row["reason_type"]], row["count"])
            count = sum(row["count"] for row in stats["results"] if row["state"] in ("due", "held"))
            backlog = selectors.due_backlog(channel=channel, now=now, count=count)
            due.add_metric([label], backlog.count)
            age = (now - backlog.oldest).total_seconds() if backlog.oldest else 0.0
            oldest.add_metric([label], max(age, 0.0))
            dispatch = dispatches.get(channel.pk)
            opened = 0.0
            if dispatch is not None and dispatch.circuit != ChannelDispatch.Circuit.CLOSED:
                since = dispatch.outage_since or dispatch.circuit_since or now
                opened = max((now - since).total_seconds(), 0.0)
            circuit.add_metric([label], opened)
            rate = protection.learned_rate(channel, dispatch, now) if dispatch else None
            learned.add_metric([label], rate or 0.0)
            for reason, on in _hold_reasons(channel, dispatch, now).items():
                held.add_metric([label, reason], float(on))
        beats = GaugeMetricFamily(
            "fi_worker_heartbeat_age_seconds",
            "Seconds since each retry worker last went round its loop; a worker that stopped "
            "cleanly is not listed, one that crashed or hangs grows old.",
            labels=["worker"],
        )
        alive = GaugeMetricFamily(
            "fi_workers_alive",
            f"Retry workers seen in the last {ALIVE_WITHIN:g} seconds.",
        )
        count = 0
        for name, seen in WorkerHeartbeat.objects.values_list("name", "seen_at"):
            age = max((now - seen).total_seconds(), 0.0)
            beats.add_metric([name], age)
            count += age <= ALIVE_WITHIN
        alive.add_metric([], count)
        yield failures
        yield due
        yield oldest
        yield beats
        yield alive
        yield circuit
        yield held
        yield learned


def _hold_reasons(channel, dispatch, now) -> dict[str, bool]:
    """Why nothing is sent to the channel's app now, each reason on or off."""
    if dispatch is None:
        return dict.fromkeys(("circuit", "paused", "disabled", "asked_to_wait"), False)
    return {
        "circuit": dispatch.circuit != "closed",
        "paused": dispatch.paused_at is not None,
        "disabled": dispatch.disabled_at is not None,
        "asked_to_wait": bool(dispatch.retry_after_until and dispatch.retry_after_until > now),
    }


def exposition() -> bytes:
    """The text format of every metric: the processes' (added up in multiprocess mode) and the
    database's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)
    else:
        processes = REGISTRY
    database = CollectorRegistry(auto_describe=False)
    database.register(DatabaseCollector())
    return generate_latest(processes) + generate_latest(database)
