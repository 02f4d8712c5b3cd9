"""Keyset pagination: `?cursor=*`, then `next`, walks every record once in the sort order."""

from __future__ import annotations

import datetime as dt

import pytest

from integrations.models import FailedIntegration

pytestmark = pytest.mark.django_db

BASE = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def walkable(channel, other_channel, make_failed):
    """17 records with ties and empty expiration dates (and one of another channel)."""
    for n in range(17):
        make_failed(
            object_id=n,
            version_date=BASE + dt.timedelta(hours=n % 5),
            expiration_date=None if n % 3 == 0 else BASE + dt.timedelta(days=n % 4),
            retry_count=n % 2,
            reason_type="mapping" if n % 4 == 0 else "remote",
        )
    make_failed(channel=other_channel)


def url(channel) -> str:
    return f"/api/v1/channel/{channel.pk}/failed_integrations/"


def walk(client, channel, **params) -> tuple[list[int], int]:
    """Every pk met following `next` from `cursor=*`, and the requests made."""
    body = client.get(url(channel), {"cursor": "*", **params}).json()
    pks, requests = [row["pk"] for row in body["results"]], 1
    while body["next"]:
        assert "cursor=" in body["next"] and "page=" not in body["next"]
        body = client.get(body["next"]).json()
        pks += [row["pk"] for row in body["results"]]
        requests += 1
    return pks, requests


SORTS = [
    "pk",
    "-pk",
    "version_date",
    "-version_date",
    "expiration_date",
    "-expiration_date",
    "retry_count",
    "-retry_count",
    "created_date",
    "-modified_date",
]


@pytest.mark.parametrize("sort", [None, *SORTS])
def test_a_walk_meets_every_record_once_in_the_sort_order(api_client, channel, walkable, sort):
    params = {"limit": 4, **({"sort": sort} if sort else {})}
    expected = [
        row["pk"]
        for row in api_client.get(url(channel), {**params, "limit": 100}).json()["results"]
    ]

    pks, requests = walk(api_client, channel, **params)

    assert len(expected) == 17
    assert pks == expected
    assert requests == 5


def test_a_walk_takes_the_filters(api_client, channel, walkable):
    pks, _ = walk(api_client, channel, limit=2, reason_type="remote", sort="-expiration_date")

    assert sorted(pks) == sorted(
        FailedIntegration.objects.filter(channel=channel, reason_type="remote").values_list(
            "pk", flat=True
        )
    )


def test_the_count_is_the_whole_filtered_set(api_client, channel, walkable):
    body = api_client.get(url(channel), {"cursor": "*", "limit": 2, "reason_type": "mapping"})

    assert body.json()["count"] == 5
    assert body.json()["previous"] is None


def test_records_added_during_a_walk_are_not_met_twice(api_client, channel, walkable, make_failed):
    first = api_client.get(url(channel), {"cursor": "*", "limit": 5}).json()
    make_failed(object_id=99)  # a new record sorts last by pk
    FailedIntegration.objects.filter(pk=first["results"][0]["pk"]).delete()

    body, pks = first, [row["pk"] for row in first["results"]]
    while body["next"]:
        body = api_client.get(body["next"]).json()
        pks += [row["pk"] for row in body["results"]]

    assert len(pks) == len(set(pks)) == 18


@pytest.mark.parametrize("sort", ["version_date", "-version_date", "expiration_date"])
def test_a_walk_in_another_order_through_inserts_and_deletes_meets_each_record_once(
    api_client, channel, walkable, make_failed, sort
):
    """Between two pages, a record is added before the cursor and one after it, one not yet
    met is deleted and one met is changed: the walk meets no record twice, and every record
    there from its start to its end once, in the sort order."""
    first = api_client.get(url(channel), {"cursor": "*", "limit": 4, "sort": sort}).json()
    met = [row["pk"] for row in first["results"]]
    rest = [
        row["pk"]
        for row in api_client.get(url(channel), {"limit": 100, "sort": sort}).json()["results"]
        if row["pk"] not in met
    ]
    early = make_failed(
        object_id=100,
        version_date=BASE - dt.timedelta(days=1),
        expiration_date=BASE - dt.timedelta(days=9),
    )
    late = make_failed(
        object_id=101,
        version_date=BASE + dt.timedelta(days=9),
        expiration_date=BASE + dt.timedelta(days=30),
    )
    gone = rest[len(rest) // 2]
    FailedIntegration.objects.filter(pk=gone).delete()
    FailedIntegration.objects.filter(pk=met[0]).update(log_id=7)

    body, pks = first, list(met)
    while body["next"]:
        body = api_client.get(body["next"]).json()
        pks += [row["pk"] for row in body["results"]]

    assert len(pks) == len(set(pks))
    stayed = [pk for pk in [*met, *rest] if pk != gone]
    assert [pk for pk in pks if pk in stayed] == stayed
    assert gone not in pks
    # What sorts after the cursor is met; what sorts before it is not.
    ascending = not sort.startswith("-")
    assert (late.pk in pks) == ascending and (early.pk in pks) == (not ascending)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "garbage!"}, "cursor"),
        ({"cursor": "W10"}, "cursor"),  # base64 of []
        ({"cursor": "WyJwayIsbnVsbCwwXQ"}, "cursor"),  # ["pk", null, 0]
        ({"cursor": "WyJ2ZXJzaW9uX2RhdGUiLCJ4IiwxXQ", "sort": "version_date"}, "cursor"),
        ({"cursor": "*", "sort": "retry_count,version_date"}, "sort"),
    ],
)
def test_fail_a_bad_cursor_answers_400(api_client, channel, walkable, params, field):
    response = api_client.get(url(channel), params)

    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_fail_a_cursor_of_another_sort(api_client, channel, walkable):
    next_url = api_client.get(url(channel), {"cursor": "*", "limit": 2}).json()["next"]

    response = api_client.get(next_url + "&sort=-version_date")

    assert response.status_code == 400
    assert response.json() == {"cursor": ["This cursor was made for another sort."]}
