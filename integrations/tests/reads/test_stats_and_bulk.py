"""Group counts and bulk intake."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import override_settings

from integrations.models import FailedIntegration
from integrations.records.representation import failed_integrations_data

pytestmark = pytest.mark.django_db

PAST = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def stats_url(channel) -> str:
    return f"/api/v1/channel/{channel.pk}/failed_integrations/stats/"


def bulk_url(channel) -> str:
    return f"/api/v1/channel/{channel.pk}/failed_integrations/bulk/"


@pytest.fixture
def mixed(make_failed, other_channel, order_type):
    # A record is exhausted once retry_count reaches max_retry_count (1 and 1 by default).
    make_failed(reason_type="remote", max_retry_count=3)
    make_failed(reason_type="remote", is_active=False, max_retry_count=3)
    make_failed(
        reason_type="remote", content_type=order_type, expiration_date=PAST, max_retry_count=3
    )
    make_failed(reason_type="mapping", retry_count=3, max_retry_count=3)
    make_failed(reason_type="remote", channel=other_channel)


def test_stats_by_reason_type_is_the_default(api_client, channel, mixed):
    response = api_client.get(stats_url(channel))

    assert response.status_code == 200
    assert response.json() == {
        "count": 4,
        "group_by": ["reason_type"],
        "results": [
            {"reason_type": "remote", "count": 3},
            {"reason_type": "mapping", "count": 1},
        ],
    }


def test_stats_by_several_keys(api_client, channel, mixed, product_type, order_type):
    body = api_client.get(
        stats_url(channel), {"group_by": "reason_type,content_type,is_active"}
    ).json()

    assert body["count"] == 4
    assert body["results"] == [
        {
            "reason_type": "mapping",
            "content_type": product_type.pk,
            "is_active": True,
            "content_type_name": "products.product",
            "count": 1,
        },
        {
            "reason_type": "remote",
            "content_type": product_type.pk,
            "is_active": False,
            "content_type_name": "products.product",
            "count": 1,
        },
        {
            "reason_type": "remote",
            "content_type": product_type.pk,
            "is_active": True,
            "content_type_name": "products.product",
            "count": 1,
        },
        {
            "reason_type": "remote",
            "content_type": order_type.pk,
            "is_active": True,
            "content_type_name": "orders.order",
            "count": 1,
        },
    ]


def test_stats_by_exhausted_and_expired(api_client, channel, mixed):
    exhausted = api_client.get(stats_url(channel), {"group_by": "exhausted"}).json()["results"]
    expired = api_client.get(stats_url(channel), {"group_by": "expired"}).json()["results"]

    assert exhausted == [{"exhausted": False, "count": 3}, {"exhausted": True, "count": 1}]
    assert expired == [{"expired": False, "count": 3}, {"expired": True, "count": 1}]


def test_stats_take_the_list_filters(api_client, channel, mixed):
    body = api_client.get(
        stats_url(channel), {"group_by": "is_active", "reason_type": "remote"}
    ).json()

    assert body["results"] == [{"is_active": True, "count": 2}, {"is_active": False, "count": 1}]


def test_stats_of_an_empty_channel(api_client, other_channel):
    body = api_client.get(stats_url(other_channel)).json()

    assert body == {"count": 0, "group_by": ["reason_type"], "results": []}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"group_by": "colour"}, "group_by"),
        ({"group_by": "reason_type,reason_type"}, "group_by"),
        ({"group_by": ","}, "group_by"),
        ({"is_active": "perhaps"}, "is_active"),
    ],
)
def test_fail_stats_with_bad_parameters(api_client, channel, params, field):
    response = api_client.get(stats_url(channel), params)

    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_fail_stats_of_an_unknown_channel(api_client):
    assert api_client.get("/api/v1/channel/999999/failed_integrations/stats/").status_code == 404


# --- bulk -------------------------------------------------------------------------------------


def item(product_type, **fields) -> dict:
    return {
        "version_date": "2025-06-27T08:38:26.936Z",
        "reason_type": "remote",
        "content_type": product_type.pk,
        "object_id": 1,
        **fields,
    }


def test_bulk_records_every_item(api_client, channel, product_type, integration_action):
    items = [item(product_type, object_id=n) for n in range(1000)]
    items[5]["integration_action"] = integration_action.pk
    items[6]["channel"] = channel.pk

    response = api_client.post(bulk_url(channel), items, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["count"] == 1000
    stored = list(FailedIntegration.objects.filter(channel=channel).order_by("pk"))
    assert [r.object_id for r in stored] == list(range(1000))
    assert [row["pk"] for row in body["results"]] == [r.pk for r in stored]
    assert body["results"][5]["integration_action"] == integration_action.pk
    assert body["results"][0]["version_date"] == "2025-06-27T08:38:26.936000Z"
    assert body["results"][0]["retry_count"] == 1


def test_bulk_answers_each_record_as_it_is_stored(api_client, channel, product_type):
    items = [
        item(
            product_type,
            object_id=n,
            reason_type=("remote", "mapping", "channel_app")[n % 3],
            is_active=n % 4 != 0,
            expiration_date=None if n % 2 else f"2030-01-{n % 28 + 1:02d}T10:00:00+03:00",
            log_id=None if n % 5 else 10**15 + n,
            retry_count=n % 4,
            max_retry_count=2,
            retry_interval=n,
        )
        for n in range(40)
    ]

    response = api_client.post(bulk_url(channel), items, format="json")

    assert response.status_code == 201
    for answered in response.json()["results"]:
        url = f"/api/v1/channel/{channel.pk}/failed_integrations/{answered['pk']}/"
        assert api_client.get(url).json() == answered
    exhausted = FailedIntegration.objects.filter(channel=channel, exhausted=True)
    assert sorted(exhausted.values_list("object_id", flat=True)) == [
        n for n in range(40) if n % 4 >= 2
    ]


def test_fail_bulk_with_one_bad_item_records_nothing(api_client, channel, product_type):
    items = [item(product_type, object_id=n) for n in range(10)]
    items[3]["reason_type"] = "network"
    items[7]["content_type"] = 999_999
    items[8] = "not an object"

    response = api_client.post(bulk_url(channel), items, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "detail": "3 of 10 items are invalid; nothing was recorded.",
        "code": "invalid",
        "items": [
            {"index": 3, "errors": {"reason_type": ['"network" is not a valid choice.']}},
            {
                "index": 7,
                "errors": {
                    "content_type": [
                        'Invalid pk "999999" - object does not exist. See /api/v1/content_types/.'
                    ]
                },
            },
            {
                "index": 8,
                "errors": {
                    "non_field_errors": ["Invalid data. Expected a dictionary, but got str."]
                },
            },
        ],
    }
    assert not FailedIntegration.objects.exists()


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_bulk_report_the_database_fails_midway_stores_none_of_its_items(
    api_client, channel, product_type
):
    """The database cancels the batch's statement at its second row (as a statement timeout
    would): 503, and not one item of the batch is stored."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION test_cancel_999() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.object_id = 999 THEN RAISE EXCEPTION 'canceling statement' USING "
            "ERRCODE = 'query_canceled'; END IF; RETURN NEW; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER test_cancel_999 BEFORE INSERT ON integrations_failedintegration "
            "FOR EACH ROW EXECUTE FUNCTION test_cancel_999()"
        )
    try:
        batch = [item(product_type, object_id=n) for n in (1, 999, 3)]
        response = api_client.post(bulk_url(channel), batch, format="json")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER test_cancel_999 ON integrations_failedintegration")
            cursor.execute("DROP FUNCTION test_cancel_999()")

    assert response.status_code == 503, response.content
    assert response.json()["code"] == "database_unavailable" and response["Retry-After"]
    assert not FailedIntegration.objects.filter(channel=channel).exists()


def test_fail_bulk_with_another_channels_item(api_client, channel, other_channel, product_type):
    items = [item(product_type), item(product_type, channel=other_channel.pk)]

    response = api_client.post(bulk_url(channel), items, format="json")

    assert response.status_code == 400
    assert response.json()["items"] == [
        {
            "index": 1,
            "errors": {"channel": [f"Must be the channel of the URL ({channel.pk}) or left out."]},
        }
    ]


@override_settings(BULK_MAX_ITEMS=5)
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"a": 1}, "Expected a list of items, but got dict."),
        ([], "Expected at least one item."),
        (["x"] * 6, "Ensure this list has at most 5 items, not 6."),
    ],
)
def test_fail_bulk_with_a_body_that_is_not_a_batch(api_client, channel, body, message):
    response = api_client.post(bulk_url(channel), body, format="json")

    assert response.status_code == 400
    assert response.json() == {"non_field_errors": [message]}


def test_fail_bulk_to_an_unknown_channel(api_client, product_type):
    response = api_client.post(
        "/api/v1/channel/999999/failed_integrations/bulk/", [item(product_type)], format="json"
    )

    assert response.status_code == 404


def test_fail_bulk_needs_a_token(anonymous_client, channel, product_type):
    response = anonymous_client.post(bulk_url(channel), [item(product_type)], format="json")

    assert response.status_code == 401


def test_bulk_is_post_only(api_client, channel):
    assert api_client.get(bulk_url(channel)).status_code == 405


def test_stats_by_state_agree_with_the_state_filter(api_client, channel, records):
    body = api_client.get(stats_url(channel), {"group_by": "state,reason_type"}).json()

    assert body["count"] == 4
    by_state: dict[str, int] = {}
    for row in body["results"]:
        by_state[row["state"]] = by_state.get(row["state"], 0) + row["count"]
    for state, count in by_state.items():
        listed = api_client.get(
            f"/api/v1/channel/{channel.pk}/failed_integrations/", {"state": state}
        ).json()
        assert listed["count"] == count, state
    assert by_state == {"resolved": 1, "expired": 2, "pending": 1}


def test_a_bad_sort_lists_the_sortable_fields(api_client, channel):
    response = api_client.get(
        f"/api/v1/channel/{channel.pk}/failed_integrations/", {"sort": "bogus"}
    )

    assert response.status_code == 400
    message = response.json()["sort"][0]
    assert "bogus" in message and "version_date" in message and "retry_count" in message


@pytest.mark.parametrize("supersedes", [False, True])
def test_a_bulk_answer_shows_each_record_as_it_is_stored(
    api_client, channel, product_type, integration_action, supersedes
):
    """On PostgreSQL the database writes a bulk's answer as it inserts the records: it must be
    the answer the service's own rendering gives of the records as stored, also when the
    batch superseded some (their answer is then written again)."""
    channel.retry_endpoint = "http://127.0.0.1:9/retry"
    channel.save()
    batch = [
        item(product_type, object_id=1, max_retry_count=3, retry_interval=60, log_id=4),
        item(product_type, object_id=2, integration_action=integration_action.pk, retry_count=3),
        item(product_type, object_id=3, reason_type="mapping", max_retry_count=3),
    ]
    if supersedes:  # a newer version of the first item's object
        batch.append(item(product_type, object_id=1, version_date="2026-01-01T00:00:00Z"))

    response = api_client.post(bulk_url(channel), batch, format="json")

    assert response.status_code == 201, response.content
    answer = response.json()
    stored = FailedIntegration.objects.filter(pk__in=[r["pk"] for r in answer["results"]])
    by_pk = {record.pk: record for record in stored}
    expected = failed_integrations_data(
        [by_pk[r["pk"]] for r in answer["results"]], channel=channel, shows_errors=True
    )
    assert answer == {"count": len(batch), "results": expected}
    states = [r["state"] for r in answer["results"]]
    assert states[1:3] == ["exhausted", "pending"]
    assert states[0] == ("superseded" if supersedes else "pending")
