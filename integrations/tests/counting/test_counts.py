"""The list's count: from the trigger-kept counts on PostgreSQL, equal to COUNT(*) after any
mix of writes; on SQLite the list counts rows."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from django.db import connection
from django.http import QueryDict

from integrations.choices import State
from integrations.counting import counts
from integrations.models import FailedIntegration
from integrations.reads.query import ListQuery

pytestmark = pytest.mark.django_db

BASE = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

# Filters the counts must answer on PostgreSQL (a None there means a slow COUNT(*) at scale).
SERVED = [
    "",
    "reason_type=remote",
    "reason_type__in=mapping,channel_app",
    "is_active=false",
    "exhausted=true",
    "content_type={order}",
    "content_type__in={order},{product}",
    "reason_type=remote&is_active=true&exhausted=false&content_type={product}",
    "retry_count=2",
    "retry_count__gte=2",
    "max_retry_count__lt=3",
    "retry_interval__lte=60",
    "version_date__gte=2025-01-03T05:30:00Z",
    "version_date__lt=2025-01-03T05:30:00Z",
    "version_date__gt=2025-01-02T00:00:00Z",
    "version_date__lte=2025-01-02T00:00:00+02:00",
    "created_date__gte=2025-01-01T00:00:00Z",
    "modified_date__lt=2999-01-01T00:00:00Z",
    "resolved_at__gte=2025-01-02T00:00:00Z",
    "resolved_at__isnull=true",
    "expiration_date__gt=2025-01-02T10:00:00Z",
    "expiration_date__isnull=true",
    "expiration_date__isnull=false",
    "integration_action__isnull=true",
    "log_id__isnull=false",
    "expired=true",
    "expired=false",
    "channel={channel}",
    "channel=999999",
]
# Answered by COUNT(*): selective filters and combinations the counts do not hold.
COUNTED = [
    "object_id=3",
    "object_id__in=1,2,3",
    "log_id=4",
    "version_date=2025-01-02T00:00:00Z",
    "reason_type=remote&retry_count__gte=2",
    "pk__in=1,2,3",
]


def query(text: str, **names) -> ListQuery:
    return ListQuery.from_params(QueryDict(text.format(**names)))


def scatter(make_failed, rng: random.Random, n: int, types) -> None:
    for _ in range(n):
        make_failed(
            reason_type=rng.choice(["mapping", "remote", "channel_app"]),
            is_active=rng.random() < 0.8,
            content_type=rng.choice(types),
            object_id=rng.randint(1, 5),
            log_id=rng.choice([None, 4, 5]),
            version_date=BASE + dt.timedelta(minutes=rng.randint(0, 5 * 24 * 60)),
            expiration_date=rng.choice(
                [None, BASE + dt.timedelta(hours=rng.randint(0, 72)), dt.datetime.now(dt.UTC)]
            ),
            retry_count=rng.randint(0, 4),
            max_retry_count=rng.randint(1, 4),
            retry_interval=rng.choice([0, 60, 300]),
        )


def assert_counts_agree(channel, names) -> None:
    for text in SERVED + COUNTED:
        list_query = query(text, **names)
        expected = list_query.apply(FailedIntegration.objects.filter(channel=channel)).count()
        answered = counts.count(channel.pk, list_query.filters)
        if text in SERVED or answered is not None:
            assert answered == expected, text


# The counts are kept by PostgreSQL's triggers; on SQLite every count is a COUNT(*).
@pytest.mark.postgres_only
def test_counts_agree_with_count_after_every_kind_of_write(
    channel, other_channel, make_failed, product_type, order_type
):
    rng = random.Random(7)
    names = {"order": order_type.pk, "product": product_type.pk, "channel": channel.pk}
    scatter(make_failed, rng, 120, [product_type, order_type])
    scatter(
        lambda **f: make_failed(channel=other_channel, **f), rng, 30, [product_type, order_type]
    )
    assert_counts_agree(channel, names)

    records = list(FailedIntegration.objects.filter(channel=channel))
    for record in rng.sample(records, 40):
        FailedIntegration.objects.filter(pk=record.pk).update(
            is_active=not record.is_active,
            retry_count=rng.randint(0, 4),
            expiration_date=None,
            version_date=record.version_date + dt.timedelta(hours=rng.randint(-30, 30)),
            max_retry_count=rng.randint(1, 4),
            log_id=rng.choice([None, 6]),
            modified_date=BASE + dt.timedelta(hours=rng.randint(0, 48)),
        )
    FailedIntegration.objects.filter(channel=channel, reason_type="mapping").update(
        reason_type="remote", content_type=order_type
    )
    assert_counts_agree(channel, names)

    FailedIntegration.objects.filter(pk__in=[r.pk for r in rng.sample(records, 25)]).delete()
    FailedIntegration.objects.bulk_create(
        FailedIntegration(
            channel=channel,
            content_type=product_type,
            object_id=n,
            reason_type="channel_app",
            version_date=BASE + dt.timedelta(hours=n),
        )
        for n in range(50)
    )
    assert_counts_agree(channel, names)

    counts.compact()
    assert_counts_agree(channel, names)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM fi_count_cube_delta")
        assert cursor.fetchone()[0] == 0
    make_failed(reason_type="remote")
    assert_counts_agree(channel, names)


@pytest.mark.postgres_only
def test_an_update_of_uncounted_columns_only_appends_no_deltas(channel, make_failed):
    for n in range(5):
        make_failed(object_id=n)
    counts.compact()
    FailedIntegration.objects.filter(channel=channel).update(
        lease_owner="worker", lease_expires_at=BASE, last_error="x"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM fi_count_cube_delta)"
            " + (SELECT count(*) FROM fi_count_hist_delta)"
        )
        assert cursor.fetchone()[0] == 0
    FailedIntegration.objects.filter(channel=channel, object_id=0).update(retry_count=3)
    with connection.cursor() as cursor:
        cursor.execute("SELECT dim, value, n FROM fi_count_hist_delta ORDER BY n")
        assert cursor.fetchall() == [(1, 1, -1), (1, 3, 1)]


def test_the_list_count_is_exact(api_client, channel, make_failed, order_type):
    for n in range(7):
        make_failed(object_id=n, content_type=order_type)
    make_failed(reason_type="mapping", object_id=100)

    url = f"/api/v1/channel/{channel.pk}/failed_integrations/"
    assert api_client.get(url).json()["count"] == 8
    assert api_client.get(url, {"reason_type": "mapping"}).json()["count"] == 1
    assert api_client.get(url, {"object_id__in": "1,2"}).json()["count"] == 2


@pytest.mark.postgres_only
def test_deleting_a_channel_removes_its_counts(channel, make_failed):
    make_failed()
    make_failed()
    channel_id = channel.pk

    channel.delete()

    assert counts.count(channel_id, ()) == 0


@pytest.mark.postgres_only
def test_reads_fold_the_deltas_when_many_have_piled_up(channel, make_failed, monkeypatch):
    monkeypatch.setattr(counts, "COMPACT_AFTER_DELTAS", 3)
    for n in range(6):
        make_failed(object_id=n)

    assert counts.count(channel.pk, ()) == 6  # this read meets 6 deltas and folds them
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM fi_count_cube_delta WHERE channel_id = %s", [channel.pk]
        )
        assert cursor.fetchone()[0] == 0
    assert counts.count(channel.pk, ()) == 6


@pytest.mark.postgres_only
@pytest.mark.parametrize(
    ("group_by", "params"),
    [
        ("reason_type", ""),
        ("reason_type,content_type,is_active,exhausted", ""),
        ("is_active", "reason_type=remote"),
        ("content_type,exhausted", "reason_type__in=mapping,remote&is_active=true"),
        ("state", ""),
        ("state,reason_type,content_type", ""),
        ("state,exhausted", "is_active=true"),
        ("reason_type,state", "state__in=pending,due,in_progress,exhausted&reason_type=remote"),
        ("content_type", "state=expired"),
        ("state", "state__in=expired,parked&state=parked"),
        ("state,parked", "parked=true"),
    ],
)
@pytest.mark.parametrize("held", [False, True], ids=["sending", "held"])
def test_group_counts_agree_with_grouping_the_table(
    channel, make_failed, product_type, order_type, group_by, params, held
):
    from integrations.reads.selectors import _group_rows, counted_groups

    rng = random.Random(3)
    scatter(make_failed, rng, 60, [product_type, order_type])
    FailedIntegration.objects.filter(pk__in=FailedIntegration.objects.values("pk")[:10]).update(
        is_active=False, retry_count=9
    )
    # Every state: parked, leased, due and superseded records besides the scattered ones.
    now = dt.datetime.now(dt.UTC)
    pks = list(FailedIntegration.objects.order_by("pk").values_list("pk", flat=True))
    hour = dt.timedelta(hours=1)
    live = {"is_active": True, "expiration_date": None}
    for offset, fields in enumerate(
        [
            {"parked": True},
            {"lease_expires_at": now + hour, **live},
            {"lease_expires_at": now - hour, "next_retry_at": now - hour, **live},
            {"next_retry_at": now - hour, "retry_count": 9, **live},
            {"next_retry_at": now + hour, "parked": True, **live},
            {"next_retry_at": None, "retry_count": 9, **live},
            {"next_retry_at": None, "retry_count": 0, "parked": False, **live},
            {"is_active": False, "resolution": "superseded"},
        ]
    ):
        FailedIntegration.objects.filter(pk__in=pks[10 + offset :: 8]).update(**fields)
    channel.retry_endpoint = "http://127.0.0.1:9/r"
    # Held: its circuit open, say (dispatch/protection.py); its due records are `held`.
    channel.dispatch_held_until = now + hour if held else None
    channel.save()
    keys = group_by.split(",")
    columns = ["content_type_id" if key == "content_type" else key for key in keys]
    list_query = query(params)

    from_counts = counted_groups(channel, list_query.filters, columns, now=now)
    from_table = _group_rows(
        list_query.apply(FailedIntegration.objects.filter(channel=channel)),
        keys,
        columns,
        dispatch={"has_endpoint": True, "held": held},
        now=now,
    )

    assert from_counts is not None
    assert sorted(from_counts) == sorted(from_table)
    if "state" in keys and not params:  # the data has every state (held or due)
        left_out = State.DUE if held else State.HELD
        assert {row[keys.index("state")] for row in from_table} == set(State.values) - {left_out}


@pytest.mark.postgres_only
def test_reported_and_resolved_per_hour_agree_with_the_table(channel, make_failed, order_type):
    """The console's chart reads these counts: they follow inserts, changes of the reason or
    of the created hour, and deletes."""
    from django.db.models import Count
    from django.db.models.functions import TruncHour

    rng = random.Random(5)
    scatter(make_failed, rng, 40, [order_type])
    records = FailedIntegration.objects.filter(channel=channel)
    start = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    pks = list(records.order_by("pk").values_list("pk", flat=True))
    for offset, hours in enumerate([-30, -5, 0, 2]):
        records.filter(pk__in=pks[offset::5]).update(
            created_date=start + dt.timedelta(hours=hours, minutes=offset)
        )
    records.filter(pk__in=pks[4::9]).update(reason_type="channel_app")
    for offset, hours in enumerate([-40, -3, 0]):
        records.filter(pk__in=pks[offset::4]).update(
            resolved_at=start + dt.timedelta(hours=hours, minutes=offset)
        )
    records.filter(pk__in=pks[::11]).delete()
    since = start - dt.timedelta(hours=6)

    expected = {
        (hour, reason): n
        for hour, reason, n in records.filter(created_date__gte=since)
        .annotate(hour=TruncHour("created_date"))
        .values_list("hour", "reason_type")
        .annotate(n=Count("pk"))
        .order_by()
    }
    assert len(expected) >= 4
    assert counts.reported_per_hour(channel.pk, since) == expected
    resolved = dict(
        records.filter(resolved_at__gte=since)
        .annotate(hour=TruncHour("resolved_at"))
        .values_list("hour")
        .annotate(n=Count("pk"))
        .order_by()
    )
    assert len(resolved) == 2
    assert counts.per_hour(channel.pk, "resolved_at", since) == resolved
