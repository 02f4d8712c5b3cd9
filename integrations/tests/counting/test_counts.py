"""The list's count: from the trigger-kept counts on PostgreSQL, equal to COUNT(*) after any
mix of writes; on SQLite the list counts rows."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from django.db import connection
from django.http import QueryDict

from common.database import is_postgresql
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
        answered = counts.count(channel.pk, list_query.filters) if is_postgresql() else None
        if (connection.vendor == "postgresql" and text in SERVED) or answered is not None:
            assert answered == expected, text


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

    if is_postgresql():
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
    ],
)
def test_group_counts_agree_with_grouping_the_table(
    channel, make_failed, product_type, order_type, group_by, params
):
    from integrations.reads.selectors import _group_rows

    rng = random.Random(3)
    scatter(make_failed, rng, 60, [product_type, order_type])
    FailedIntegration.objects.filter(pk__in=FailedIntegration.objects.values("pk")[:10]).update(
        is_active=False, retry_count=9
    )
    keys = group_by.split(",")
    columns = ["content_type_id" if key == "content_type" else key for key in keys]
    list_query = query(params)

    from_counts = counts.group_counts(channel.pk, list_query.filters, columns)
    from_table = _group_rows(
        list_query.apply(FailedIntegration.objects.filter(channel=channel)),
        keys,
        columns,
        has_endpoint=False,
    )

    assert from_counts is not None
    assert sorted(from_counts) == sorted(from_table)
