"""What the overview shows of a channel: its failures by state and by reason, the due backlog,
the dispatch health of its channel app, and failures reported and resolved per hour."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Count
from django.db.models.functions import TruncHour
from django.http import QueryDict
from django.utils import timezone

from common.database import is_postgresql
from integrations.channels import services as channel_services
from integrations.choices import AttemptOutcome, ReasonType, State
from integrations.counting import counts
from integrations.models import Channel, FailedIntegration, RetryAttempt
from integrations.reads import selectors

# The states of records still in play, in the order an operator reads them.
LIVE_STATES = (
    State.DUE,
    State.HELD,
    State.IN_PROGRESS,
    State.PENDING,
    State.EXHAUSTED,
    State.PARKED,
)
HEALTH_WINDOW = 50  # attempts looked at for the channel app's health
CHART_HOURS = 7 * 24


@dataclass
class Health:
    last_success: dt.datetime | None = None
    last_failure: dt.datetime | None = None
    consecutive_failures: int = 0
    more_than: bool = False  # every attempt looked at failed


@dataclass
class Summary:
    channel: Channel
    role: str
    by_state: dict[str, int]
    by_reason: dict[str, int]
    due: int
    oldest_due: dt.datetime | None
    health: Health
    dispatch: dict = field(default_factory=dict)
    chart: dict = field(default_factory=dict)

    @property
    def may_write(self) -> bool:
        return self.role in ("operator", "admin")

    @property
    def active(self) -> int:
        return sum(self.by_reason.values())

    @property
    def oldest_due_age(self) -> dt.timedelta | None:
        return timezone.now() - self.oldest_due if self.oldest_due else None


def _grouped(channel: Channel, query: str) -> dict[str, int]:
    stats = selectors.failed_integration_stats(channel=channel, params=QueryDict(query))
    key = stats["group_by"][0]
    return {row[key]: row["count"] for row in stats["results"]}


def summary(channel: Channel, role: str, *, now: dt.datetime | None = None) -> Summary:
    now = now or timezone.now()
    by_state = _grouped(channel, "group_by=state&is_active=true")
    waiting = by_state.get(State.DUE, 0) + by_state.get(State.HELD, 0)
    due = selectors.due_backlog(channel=channel, now=now, count=waiting)
    return Summary(
        channel=channel,
        role=role,
        by_state=by_state,
        by_reason=_grouped(channel, "group_by=reason_type&is_active=true"),
        due=due.count,
        oldest_due=due.oldest,
        health=health(channel),
        dispatch=channel_services.dispatch_health(channel, now=now, backlog=due),
        chart=chart(channel, now=now),
    )


def health(channel: Channel) -> Health:
    """From the channel's latest attempts."""
    recent = list(
        RetryAttempt.objects.filter(failed_integration__channel=channel, finished_at__isnull=False)
        .order_by("-pk")
        .values_list("outcome", "finished_at")[:HEALTH_WINDOW]
    )
    result = Health()
    recent = [(o, f) for o, f in recent if o != AttemptOutcome.LEASE_LOST]
    for outcome, finished in recent:
        if outcome == AttemptOutcome.SUCCESS:
            result.last_success = result.last_success or finished
        else:
            result.last_failure = result.last_failure or finished
    for outcome, _ in recent:
        if outcome == AttemptOutcome.SUCCESS:
            break
        result.consecutive_failures += 1
    result.more_than = len(recent) == HEALTH_WINDOW == result.consecutive_failures
    return result


def chart(channel: Channel, *, now: dt.datetime) -> dict:
    """Failures reported per hour by reason, and resolved per hour, over the last 7 days, as
    SVG geometry (bars stacked by reason, a line for the resolved)."""
    start = (now - dt.timedelta(hours=CHART_HOURS - 1)).replace(minute=0, second=0, microsecond=0)
    records = FailedIntegration.objects.filter(channel=channel)
    if is_postgresql():  # from the counts
        reported = [
            (hour, reason, n)
            for (hour, reason), n in counts.reported_per_hour(channel.pk, start).items()
        ]
        resolved = list(counts.per_hour(channel.pk, "resolved_at", start).items())
    else:
        reported = (
            records.filter(created_date__gte=start)
            .annotate(hour=TruncHour("created_date"))
            .values_list("hour", "reason_type")
            .annotate(n=Count("pk"))
            .order_by()
        )
        resolved = (
            records.filter(resolved_at__gte=start)
            .annotate(hour=TruncHour("resolved_at"))
            .values_list("hour")
            .annotate(n=Count("pk"))
            .order_by()
        )
    index = {start + dt.timedelta(hours=h): h for h in range(CHART_HOURS)}
    bars = [dict.fromkeys(ReasonType.values, 0) for _ in range(CHART_HOURS)]
    for hour, reason, n in reported:
        if hour in index:
            bars[index[hour]][reason] += n
    done = [0] * CHART_HOURS
    for hour, n in resolved:
        if hour in index:
            done[index[hour]] += n
    peak = max([sum(b.values()) for b in bars] + done + [1])
    width, height = 3, 80
    rects, line = [], []
    for h, bar in enumerate(bars):
        y = height
        for reason, n in bar.items():
            if n:
                tall = n / peak * height
                y -= tall
                rects.append(
                    {
                        "x": h * width,
                        "y": round(y, 2),
                        "h": round(tall, 2),
                        "reason": reason,
                        "n": n,
                    }
                )
        line.append(f"{h * width + 1.5},{round(height - done[h] / peak * height, 2)}")
    return {
        "width": CHART_HOURS * width,
        "height": height,
        "rects": rects,
        "resolved": " ".join(line),
        "peak": peak,
        "reported_total": sum(sum(b.values()) for b in bars),
        "resolved_total": sum(done),
        "start": start,
    }
