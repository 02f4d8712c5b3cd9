"""Where a record is in its retry life cycle (`State`): derived from its fields, the time and
whether its channel has a retry endpoint; never stored.

The rule is one `Case` (`state_expression`); the fast path's SQL is compiled from it
(`state_sql`). `record_state` is its mirror for a record in memory (an answer after a write)
and `state_q` its filter form (for speed, see there); the tests of every state keep the three
in step on both databases.
"""

from __future__ import annotations

import datetime as dt
import functools

from django.db.models import BooleanField, Case, CharField, F, Q, Value, When
from django.db.models.expressions import Combinable, RawSQL

from common.database import compile_sql, inline_sql
from integrations.choices import Resolution, State
from integrations.models import FailedIntegration

# A scheduled record is sent when it has retries left, or an operator asked for the attempt
# (whatever its `next_retry_at` says, which a race of writers could have left set).
RETRIES_LEFT = Q(exhausted=False) | Q(retry_by_hand=True)


def state_expression(
    *,
    now: Combinable | dt.datetime,
    has_endpoint: Q | Combinable,
    held: Q | Combinable,
) -> Case:
    """The state as one CASE, its tests in the order of `record_state`'s. `has_endpoint` and
    `held`: the channel's (it has a retry endpoint; its dispatch is held, see `dispatch_held`)."""
    return Case(
        When(
            Q(is_active=False, resolution__in=[Resolution.SUPERSEDED, Resolution.EXPIRED]),
            then=F("resolution"),
        ),
        When(is_active=False, then=Value(State.RESOLVED)),
        When(expiration_date__lte=now, then=Value(State.EXPIRED)),
        When(parked=True, then=Value(State.PARKED)),
        When(lease_expires_at__gt=now, then=Value(State.IN_PROGRESS)),
        When(
            Q(has_endpoint) & Q(next_retry_at__lte=now) & RETRIES_LEFT & Q(held),
            then=Value(State.HELD),
        ),
        When(Q(has_endpoint) & Q(next_retry_at__lte=now) & RETRIES_LEFT, then=Value(State.DUE)),
        When(exhausted=True, then=Value(State.EXHAUSTED)),
        default=Value(State.PENDING),
        output_field=CharField(),
    )


def _channel_has_endpoint() -> Q:
    return ~Q(channel__retry_endpoint="")


def _channel_held(now: dt.datetime) -> Q:
    return Q(channel__dispatch_held_until__gt=now)


def dispatch_held(channel, now: dt.datetime) -> bool:
    """Whether nothing is sent to the channel's app now (paused, its circuit open, or it asked
    to wait): its due records are `held`."""
    return channel.dispatch_held_until is not None and channel.dispatch_held_until > now


def dispatch_of(channel, now: dt.datetime | None = None) -> dict[str, bool]:
    """What the state of a channel's records depends on beside their own fields:
    `has_endpoint` and `held`, as keyword arguments of the functions here."""
    from django.utils import timezone

    return {
        "has_endpoint": bool(channel.retry_endpoint),
        "held": dispatch_held(channel, now or timezone.now()),
    }


def _conditions(now: dt.datetime, has_endpoint: Q, held: Q) -> tuple[dict[str, Q], dict[str, Q]]:
    """Each state's CASE branch as conditions on the columns, and the sets of active records
    whose state the time decides."""
    inactive = Q(is_active=False)
    expired_by_date = Q(is_active=True) & Q(expiration_date__lte=now)
    live = Q(is_active=True) & ~Q(expiration_date__lte=now)  # active and not past expiry
    in_progress = Q(lease_expires_at__gt=now)
    due = Q(next_retry_at__lte=now) & RETRIES_LEFT & has_endpoint
    exhausted = Q(exhausted=True)
    timed = {
        State.EXPIRED: expired_by_date,
        State.IN_PROGRESS: live & Q(parked=False) & in_progress,
        State.HELD: live & Q(parked=False) & ~in_progress & due & held,
        State.DUE: live & Q(parked=False) & ~in_progress & due & ~held,
    }
    states = {
        State.SUPERSEDED: inactive & Q(resolution=Resolution.SUPERSEDED),
        State.RESOLVED: inactive & ~Q(resolution__in=[Resolution.SUPERSEDED, Resolution.EXPIRED]),
        State.EXPIRED: (inactive & Q(resolution=Resolution.EXPIRED)) | timed[State.EXPIRED],
        State.PARKED: live & Q(parked=True),
        State.IN_PROGRESS: timed[State.IN_PROGRESS],
        State.HELD: timed[State.HELD],
        State.DUE: timed[State.DUE],
        State.EXHAUSTED: live & Q(parked=False) & ~in_progress & ~due & exhausted,
        State.PENDING: live & Q(parked=False) & ~in_progress & ~due & ~exhausted,
    }
    return states, timed


def state_q(state: str, *, now: dt.datetime) -> Q:
    """The records in `state`, as a queryset filter: the CASE's branch written as conditions
    on the columns. Filtering by the CASE itself was measured 1.1 to 20 times slower at 30,000
    records of a channel (every row's CASE evaluated; a rare state's index not used), so the
    filter keeps its own form, which the tests of every state check against the CASE."""
    return _conditions(now, _channel_has_endpoint(), _channel_held(now))[0][state]


def timed_states_q(*, now: dt.datetime, has_endpoint: bool, held: bool) -> dict[str, Q]:
    """The active records whose state the time decides, by that state, for a channel with or
    without a retry endpoint, its dispatch held or not: expired by date, else leased (in
    progress), else due (or held). The sets are disjoint (each leaves out the ones before it);
    every other record is in its `untimed_state`."""
    _, timed = _conditions(
        now, Q() if has_endpoint else Q(pk__in=[]), Q() if held else Q(pk__in=[])
    )
    if not has_endpoint:
        del timed[State.DUE], timed[State.HELD]
    else:
        del timed[State.DUE if held else State.HELD]
    return timed


@functools.cache
def untimed_state(*, is_active: bool, resolution: str, parked: bool, exhausted: bool) -> str:
    """The state of a record that is not past its expiry, not leased and not due: it follows
    from the four columns the counts keep per cell (see counting)."""
    record = FailedIntegration(
        is_active=is_active,
        resolution=resolution,
        parked=parked,
        retry_count=int(exhausted),
        max_retry_count=1,
    )
    return record_state(
        record, has_endpoint=False, held=False, now=dt.datetime.min.replace(tzinfo=dt.UTC)
    )


def states_q(states: list[str], *, now: dt.datetime) -> Q:
    """The records in any of `states` (each state once)."""
    condition = Q(pk__in=[])
    for state in dict.fromkeys(states):
        condition |= state_q(state, now=now)
    return condition


# Stand-ins for the SQL that `state_sql` is given, unique in the compiled text.
_NOW_MARK, _ENDPOINT_MARK, _HELD_MARK = (
    "fi_state_now_mark",
    "fi_state_endpoint_mark",
    "fi_state_held_mark",
)


@functools.cache
def _compiled_state(alias: str) -> str:
    expression = state_expression(
        now=RawSQL(_NOW_MARK, []),  # noqa: S611 (a constant, replaced below)
        has_endpoint=RawSQL(_ENDPOINT_MARK, [], output_field=BooleanField()),  # noqa: S611
        held=RawSQL(_HELD_MARK, [], output_field=BooleanField()),  # noqa: S611
    )
    # The constants (state names) become literals: the text is a fragment of other statements.
    return inline_sql(*compile_sql(FailedIntegration, expression, alias))


def state_sql(alias: str, *, now: str, has_endpoint: str, held: str) -> str:
    """The state as SQL on the table aliased `alias`, compiled from `state_expression`; `now`,
    `has_endpoint` and `held` are SQL expressions."""
    return (
        _compiled_state(alias)
        .replace(_NOW_MARK, now)
        .replace(_ENDPOINT_MARK, has_endpoint)
        .replace(_HELD_MARK, held)
    )


def record_state(
    record: FailedIntegration, *, has_endpoint: bool, held: bool, now: dt.datetime
) -> str:
    """The state of a record in memory: `state_expression`'s tests, in Python."""
    if not record.is_active:
        if record.resolution in (Resolution.SUPERSEDED, Resolution.EXPIRED):
            return record.resolution
        return State.RESOLVED
    if record.expiration_date is not None and record.expiration_date <= now:
        return State.EXPIRED
    if record.parked:
        return State.PARKED
    if record.lease_expires_at is not None and record.lease_expires_at > now:
        return State.IN_PROGRESS
    exhausted = record.retry_count >= record.max_retry_count
    due = record.next_retry_at is not None and record.next_retry_at <= now
    if has_endpoint and due and (not exhausted or record.retry_by_hand):
        return State.HELD if held else State.DUE
    if exhausted:
        return State.EXHAUSTED
    return State.PENDING
