"""A record's derived `state` is one thing in each of its forms: `record_state` in Python, the
`state` and `state__in` filters (`state_q`), the `state` of the API's JSON, and on PostgreSQL
`state_sql` (the fast path's) — for every state and at each boundary between them."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from django.db import connection
from django.db.models import Q
from django.utils import timezone
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from integrations.choices import Resolution, State
from integrations.dispatch.protection import FOREVER
from integrations.lifecycle.states import (
    dispatch_held,
    record_state,
    state_expression,
    state_q,
    state_sql,
)
from integrations.models import Channel, FailedIntegration
from integrations.reads.selectors import counted_groups

pytestmark = pytest.mark.django_db

UTC = dt.UTC
NOW = dt.datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
MOMENT = dt.timedelta(microseconds=1)
# With the wall clock (the API's), a day either side of the present is unambiguous.
DAY = dt.timedelta(days=1)
TIME_FIELDS = ("expiration_date", "lease_expires_at", "next_retry_at")

# (what the record is, its channel: E with a retry endpoint, N without, H with one whose
# dispatch is held (dispatch/protection.py), its fields, its state). Times are in units either
# side of now: -1 a moment ago, 0 exactly now, 1 a moment on.
CASES = [
    ("fresh", "E", {}, State.PENDING),
    ("scheduled later", "E", {"next_retry_at": 1}, State.PENDING),
    ("scheduled a moment ago", "E", {"next_retry_at": -1}, State.DUE),
    ("scheduled exactly now", "E", {"next_retry_at": 0}, State.DUE),
    ("scheduled a moment ago, channel without endpoint", "N", {"next_retry_at": -1}, State.PENDING),
    (
        "scheduled a moment ago, exhausted, channel without endpoint",
        "N",
        {"next_retry_at": -1, "retry_count": 3, "max_retry_count": 3},
        State.EXHAUSTED,
    ),
    (
        "exhausted and scheduled at once (as racing writers could leave it): never sent",
        "E",
        {"next_retry_at": -1, "retry_count": 3, "max_retry_count": 3},
        State.EXHAUSTED,
    ),
    (
        "exhausted, an attempt asked for by hand",
        "E",
        {"next_retry_at": -1, "retry_count": 3, "max_retry_count": 3, "retry_by_hand": True},
        State.DUE,
    ),
    (
        "asked for by hand, scheduled later",
        "E",
        {"next_retry_at": 1, "retry_count": 3, "max_retry_count": 3, "retry_by_hand": True},
        State.EXHAUSTED,
    ),
    ("retries at the maximum", "E", {"retry_count": 3, "max_retry_count": 3}, State.EXHAUSTED),
    ("retries beyond the maximum", "E", {"retry_count": 5, "max_retry_count": 3}, State.EXHAUSTED),
    ("no retries allowed", "N", {"retry_count": 0, "max_retry_count": 0}, State.EXHAUSTED),
    (
        "one retry short of the maximum",
        "E",
        {"retry_count": 2, "max_retry_count": 3},
        State.PENDING,
    ),
    ("leased", "E", {"lease_expires_at": 1}, State.IN_PROGRESS),
    ("leased while due", "E", {"lease_expires_at": 1, "next_retry_at": -1}, State.IN_PROGRESS),
    (
        "leased while exhausted",
        "N",
        {"lease_expires_at": 1, "retry_count": 3, "max_retry_count": 3},
        State.IN_PROGRESS,
    ),
    ("lease just expired, due", "E", {"lease_expires_at": -1, "next_retry_at": -1}, State.DUE),
    ("lease just expired", "N", {"lease_expires_at": -1}, State.PENDING),
    ("lease expiring exactly now", "E", {"lease_expires_at": 0}, State.PENDING),
    (
        "lease expiring exactly now, exhausted",
        "E",
        {"lease_expires_at": 0, "retry_count": 1, "max_retry_count": 1},
        State.EXHAUSTED,
    ),
    ("parked", "E", {"parked": True}, State.PARKED),
    ("scheduled a moment ago, dispatch held", "H", {"next_retry_at": -1}, State.HELD),
    ("scheduled exactly now, dispatch held", "H", {"next_retry_at": 0}, State.HELD),
    ("scheduled later, dispatch held", "H", {"next_retry_at": 1}, State.PENDING),
    (
        "exhausted and scheduled, dispatch held",
        "H",
        {"next_retry_at": -1, "retry_count": 3, "max_retry_count": 3},
        State.EXHAUSTED,
    ),
    (
        "exhausted, asked for by hand, dispatch held",
        "H",
        {"next_retry_at": -1, "retry_count": 3, "max_retry_count": 3, "retry_by_hand": True},
        State.HELD,
    ),
    (
        "leased while due, dispatch held",
        "H",
        {"lease_expires_at": 1, "next_retry_at": -1},
        State.IN_PROGRESS,
    ),
    ("parked while due, dispatch held", "H", {"parked": True, "next_retry_at": -1}, State.PARKED),
    (
        "expired while due, dispatch held",
        "H",
        {"expiration_date": -1, "next_retry_at": -1},
        State.EXPIRED,
    ),
    (
        "parked while leased and due",
        "E",
        {"parked": True, "lease_expires_at": 1, "next_retry_at": -1},
        State.PARKED,
    ),
    (
        "parked while exhausted",
        "N",
        {"parked": True, "retry_count": 9, "max_retry_count": 1},
        State.PARKED,
    ),
    ("expiring a moment ago", "E", {"expiration_date": -1}, State.EXPIRED),
    ("expiring exactly now", "N", {"expiration_date": 0}, State.EXPIRED),
    ("expiring a moment on", "E", {"expiration_date": 1}, State.PENDING),
    (
        "expired while parked, leased and due",
        "E",
        {"expiration_date": -1, "parked": True, "lease_expires_at": 1, "next_retry_at": -1},
        State.EXPIRED,
    ),
    ("inactive, resolved", "E", {"is_active": False, "resolution": "resolved"}, State.RESOLVED),
    ("inactive without a resolution", "N", {"is_active": False}, State.RESOLVED),
    (
        "inactive, superseded",
        "E",
        {"is_active": False, "resolution": "superseded"},
        State.SUPERSEDED,
    ),
    ("inactive, expired", "N", {"is_active": False, "resolution": "expired"}, State.EXPIRED),
    (
        "inactive, resolved, past its expiration",
        "E",
        {"is_active": False, "resolution": "resolved", "expiration_date": -1},
        State.RESOLVED,
    ),
    (
        "inactive, superseded, parked, leased and due",
        "E",
        {
            "is_active": False,
            "resolution": "superseded",
            "parked": True,
            "lease_expires_at": 1,
            "next_retry_at": -1,
        },
        State.SUPERSEDED,
    ),
    (
        "inactive, expired, its expiration ahead",
        "E",
        {"is_active": False, "resolution": "expired", "expiration_date": 1},
        State.EXPIRED,
    ),
]


def test_the_cases_cover_every_state_and_resolution():
    assert {state for *_, state in CASES} == set(State.values)
    inactive = {fields.get("resolution", "") for _, _, fields, _ in CASES if "is_active" in fields}
    assert inactive == {"", *Resolution.values}


@pytest.fixture
def channels(db) -> dict[str, Channel]:
    return {
        "E": Channel.objects.create(name="With endpoint", retry_endpoint="http://127.0.0.1:9/r"),
        "N": Channel.objects.create(name="Without endpoint"),
        "H": Channel.objects.create(
            name="Held", retry_endpoint="http://127.0.0.1:9/r", dispatch_held_until=FOREVER
        ),
    }


def make_records(channels, product_type, *, now, unit, boundaries=True):
    """The records of CASES, their times `unit`s from `now`; answers (record, state) pairs.
    Without `boundaries`, the cases exactly at `now` are left out."""
    made = []
    for number, (_, key, fields, state) in enumerate(CASES):
        times = {name: fields[name] for name in TIME_FIELDS if name in fields}
        if not boundaries and 0 in times.values():
            continue
        values = {
            "reason_type": "remote",
            "content_type": product_type,
            "object_id": number,
            "version_date": dt.datetime(2025, 6, 27, tzinfo=UTC),
            "retry_count": 1,
            "max_retry_count": 3,
            **fields,
            **{name: now + k * unit for name, k in times.items()},
        }
        made.append((FailedIntegration.objects.create(channel=channels[key], **values), state))
    return made


def has_endpoint(record: FailedIntegration) -> bool:
    return bool(Channel.objects.get(pk=record.channel_id).retry_endpoint)


def held(record: FailedIntegration, now: dt.datetime) -> bool:
    return dispatch_held(Channel.objects.get(pk=record.channel_id), now)


def states_by_filter(pks: list[int], now: dt.datetime) -> dict[int, list[str]]:
    """The states whose `state_q` picks each record (exactly one, if the states partition)."""
    found: dict[int, list[str]] = {pk: [] for pk in pks}
    for state in State.values:
        for pk in FailedIntegration.objects.filter(state_q(state, now=now), pk__in=pks).values_list(
            "pk", flat=True
        ):
            found[pk].append(state)
    return found


def states_by_sql(pks: list[int], now: dt.datetime) -> dict[int, str]:
    """`state_sql` of each record, evaluated by PostgreSQL in a SELECT."""
    expression = state_sql(
        "fi",
        now="CAST(%(now)s AS timestamptz)",
        has_endpoint="(c.retry_endpoint <> '')",
        held="coalesce(c.dispatch_held_until > CAST(%(now)s AS timestamptz), false)",
    )
    table, channels = FailedIntegration._meta.db_table, Channel._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT fi.id, {expression} FROM {table} AS fi "  # noqa: S608 (names of this app)
            f"JOIN {channels} AS c ON c.id = fi.channel_id WHERE fi.id = ANY(%(pks)s)",
            {"now": now, "pks": pks},
        )
        return dict(cursor.fetchall())


# --- at a fixed now: every boundary ------------------------------------------------------------


@pytest.fixture
def at_fixed_now(channels, product_type):
    return make_records(channels, product_type, now=NOW, unit=MOMENT)


def test_record_state_at_a_fixed_now(at_fixed_now):
    answered = {
        record.pk: record_state(
            record, has_endpoint=has_endpoint(record), held=held(record, NOW), now=NOW
        )
        for record, _ in at_fixed_now
    }

    assert answered == {record.pk: state for record, state in at_fixed_now}


def test_each_record_is_in_exactly_its_states_filter_at_a_fixed_now(at_fixed_now):
    found = states_by_filter([record.pk for record, _ in at_fixed_now], NOW)

    assert found == {record.pk: [state] for record, state in at_fixed_now}


def test_the_state_expression_at_a_fixed_now(at_fixed_now):
    """The CASE the fast path's SQL is compiled from, evaluated by the database itself."""
    expression = state_expression(
        now=NOW,
        has_endpoint=~Q(channel__retry_endpoint=""),
        held=Q(channel__dispatch_held_until__gt=NOW),
    )
    found = dict(
        FailedIntegration.objects.filter(pk__in=[record.pk for record, _ in at_fixed_now])
        .annotate(computed=expression)
        .values_list("pk", "computed")
    )

    assert found == {record.pk: state for record, state in at_fixed_now}


@pytest.mark.postgres_only
def test_state_sql_at_a_fixed_now(at_fixed_now):
    found = states_by_sql([record.pk for record, _ in at_fixed_now], NOW)

    assert found == {record.pk: state for record, state in at_fixed_now}


def times(*choices) -> st.SearchStrategy:
    """Offsets from now (None: no time), the earlier ones more often."""
    return st.sampled_from(choices)


# Mostly active, unparked and unexpired records, so that the states that need all three (due,
# in progress, pending, exhausted) come up as often as the others.
record_fields = st.fixed_dictionaries(
    {
        "channel": st.sampled_from("ENH"),
        "is_active": st.sampled_from([True, True, True, False]),
        "resolution": st.sampled_from(["", *Resolution.values]),
        "parked": st.sampled_from([False, False, False, True]),
        "retry_count": st.integers(0, 3),
        "max_retry_count": st.integers(0, 3),
        "retry_by_hand": st.booleans(),
        "expiration_date": times(None, None, None, DAY, MOMENT, dt.timedelta(0), -MOMENT),
        "lease_expires_at": times(None, None, MOMENT, dt.timedelta(0), -MOMENT, DAY),
        "next_retry_at": times(None, -MOMENT, dt.timedelta(0), MOMENT, -DAY),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=st.lists(record_fields, min_size=1, max_size=8))
def test_the_forms_of_state_agree_on_any_record(channels, product_type, rows):
    FailedIntegration.objects.all().delete()
    records = [
        FailedIntegration(
            channel=channels[fields["channel"]],
            reason_type="remote",
            content_type=product_type,
            object_id=number,
            version_date=NOW,
            **{k: v for k, v in fields.items() if k != "channel" and k not in TIME_FIELDS},
            **{k: None if fields[k] is None else NOW + fields[k] for k in TIME_FIELDS},
        )
        for number, fields in enumerate(rows)
    ]
    FailedIntegration.objects.bulk_create(records)
    pks = list(FailedIntegration.objects.order_by("pk").values_list("pk", flat=True))
    stored = FailedIntegration.objects.in_bulk(pks)

    python = {
        pk: record_state(record, has_endpoint=has_endpoint(record), held=held(record, NOW), now=NOW)
        for pk, record in stored.items()
    }
    for state in python.values():
        event(f"state {state}")

    assert states_by_filter(pks, NOW) == {pk: [state] for pk, state in python.items()}
    if connection.vendor == "postgresql":
        assert states_by_sql(pks, NOW) == python
        # The counts by state (the cube's cells, corrected by the records the time decides).
        for channel in channels.values():
            expected = Counter(
                state for pk, state in python.items() if stored[pk].channel_id == channel.pk
            )
            counted = counted_groups(channel, (), ["state"], now=NOW)
            assert dict(counted) == dict(expected)


# --- through the API, at the wall clock ---------------------------------------------------------


@pytest.fixture
def around_the_present(channels, product_type):
    """The records of CASES a day either side of the present (so that the API's clock, read
    when it answers, puts them on the same side); the boundaries at now itself are left out."""
    return make_records(channels, product_type, now=timezone.now(), unit=DAY, boundaries=False)


@pytest.fixture
def regular_client(staff_user) -> APIClient:
    """A client the regular views answer: the fast path serves requests with a token only."""
    client = APIClient()
    client.force_authenticate(user=staff_user)
    return client


def clients(api_client, regular_client) -> dict[str, APIClient]:
    """The token client (the fast path's on PostgreSQL) and, on PostgreSQL, the regular one."""
    if connection.vendor == "postgresql":
        return {"token": api_client, "regular": regular_client}
    return {"token": api_client}


def listed(client, channel, params=None) -> dict[int, str]:
    response = client.get(
        f"/api/v1/channel/{channel.pk}/failed_integrations/", {"limit": 1000, **(params or {})}
    )
    assert response.status_code == 200, response.content
    return {row["pk"]: row["state"] for row in response.json()["results"]}


def expected_on(channel, made, states=None) -> dict[int, str]:
    return {
        record.pk: state
        for record, state in made
        if record.channel_id == channel.pk and (states is None or state in states)
    }


def test_record_state_at_the_wall_clock(around_the_present):
    now = timezone.now()

    assert {
        record.pk: record_state(
            record, has_endpoint=has_endpoint(record), held=held(record, now), now=now
        )
        for record, _ in around_the_present
    } == {record.pk: state for record, state in around_the_present}


def test_the_state_in_the_lists_json_is_the_records_state(
    api_client, regular_client, channels, around_the_present
):
    for name, client in clients(api_client, regular_client).items():
        for channel in channels.values():
            assert listed(client, channel) == expected_on(channel, around_the_present), name


def test_the_state_of_a_record_in_the_json_is_its_state(
    api_client, regular_client, around_the_present
):
    for name, client in clients(api_client, regular_client).items():
        for record, state in around_the_present:
            response = client.get(
                f"/api/v1/channel/{record.channel_id}/failed_integrations/{record.pk}/"
            )
            assert (response.status_code, response.json()["state"]) == (200, state), name


@pytest.mark.parametrize("state", State.values)
def test_the_state_filter_answers_the_records_in_that_state(
    api_client, regular_client, channels, around_the_present, state
):
    for name, client in clients(api_client, regular_client).items():
        for channel in channels.values():
            want = expected_on(channel, around_the_present, {state})
            assert listed(client, channel, {"state": state}) == want, (name, channel.name)


@pytest.mark.parametrize(
    "states",
    [
        State.values,
        ["due", "in_progress"],
        ["pending", "pending"],
        ["resolved", "superseded", "expired"],
        ["exhausted", "parked", "due"],
    ],
    ids=lambda states: ",".join(states),
)
def test_the_state_in_filter_answers_the_records_in_any_of_those_states(
    api_client, regular_client, channels, around_the_present, states
):
    for name, client in clients(api_client, regular_client).items():
        for channel in channels.values():
            want = expected_on(channel, around_the_present, set(states))
            got = listed(client, channel, {"state__in": ",".join(states)})
            assert got == want, (name, channel.name)
