"""Nothing acknowledged is lost: conditional writes, and concurrent clients on PostgreSQL."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from accounts.services import token_create
from integrations.models import FailedIntegration


def detail(channel, pk) -> str:
    return f"/api/v1/channel/{channel.pk}/failed_integrations/{pk}/"


@pytest.mark.django_db
def test_answers_carry_an_etag_that_changes_with_the_record(api_client, channel, make_failed):
    failed = make_failed()

    first = api_client.get(detail(channel, failed.pk))
    patched = api_client.patch(detail(channel, failed.pk), {"log_id": 3}, format="json")
    again = api_client.get(detail(channel, failed.pk))

    assert first["ETag"].startswith(f'"{failed.pk}-')
    assert patched["ETag"] == again["ETag"] != first["ETag"]


@pytest.mark.django_db
def test_fail_a_write_with_a_stale_if_match_answers_412(api_client, channel, make_failed):
    failed = make_failed(log_id=1)
    stale = api_client.get(detail(channel, failed.pk))["ETag"]
    api_client.patch(detail(channel, failed.pk), {"log_id": 2}, format="json")

    patch = api_client.patch(
        detail(channel, failed.pk), {"log_id": 3}, format="json", HTTP_IF_MATCH=stale
    )
    delete = api_client.delete(detail(channel, failed.pk), HTTP_IF_MATCH=stale)

    assert patch.status_code == delete.status_code == 412
    assert patch.json()["code"] == "precondition_failed"
    failed.refresh_from_db()
    assert failed.log_id == 2


@pytest.mark.django_db
def test_a_write_with_the_current_if_match_goes_through(api_client, channel, make_failed):
    failed = make_failed(log_id=1)
    current = api_client.get(detail(channel, failed.pk))["ETag"]

    response = api_client.patch(
        detail(channel, failed.pk), {"log_id": 5}, format="json", HTTP_IF_MATCH=current
    )

    assert response.status_code == 200 and response.json()["log_id"] == 5
    assert api_client.delete(detail(channel, failed.pk), HTTP_IF_MATCH="*").status_code == 204


# --- many clients at once (a live server, one database connection per request thread) -----

pg = [pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]


@pytest.fixture
def client_factory(live_server, staff_user):
    _, key = token_create(user=staff_user)

    def make() -> httpx.Client:
        return httpx.Client(base_url=live_server.url, headers={"Authorization": f"Token {key}"})

    return make


@pytest.mark.parametrize("round_", range(3))
@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres_only
def test_concurrent_patches_of_different_fields_all_land(
    client_factory, channel, make_failed, round_
):
    failed = make_failed(max_retry_count=50)
    writes = {
        "retry_count": 7,
        "max_retry_count": 40,
        "retry_interval": 900,
        "log_id": 123,
        "object_id": 4242,
        "is_active": False,
        "expiration_date": "2031-01-01T00:00:00Z",
        "reason_type": "channel_app",
    }

    def patch(item):
        with client_factory() as client:
            return client.patch(detail(channel, failed.pk), json=dict([item])).status_code

    with ThreadPoolExecutor(len(writes)) as pool:
        statuses = list(pool.map(patch, writes.items()))

    assert statuses == [200] * len(writes)
    failed.refresh_from_db()
    stored = {name: getattr(failed, name) for name in writes}
    stored["expiration_date"] = stored["expiration_date"].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert stored == writes


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres_only
def test_concurrent_creates_deletes_and_bulk_actions_leave_what_was_answered(
    client_factory, channel, product_type
):
    base = f"/api/v1/channel/{channel.pk}/failed_integrations/"

    def client_work(seed: int) -> dict:
        """One client: creates, deletes some, parks its own; answers what it was told."""
        rng = random.Random(seed)
        alive, deleted, parked = {}, set(), set()
        with client_factory() as client:
            for step in range(40):
                object_id = seed * 1000 + step
                answer = client.post(
                    base,
                    json={
                        "version_date": "2025-06-27T08:38:26Z",
                        "reason_type": "remote",
                        "content_type": product_type.pk,
                        "object_id": object_id,
                        "max_retry_count": 3,
                    },
                )
                assert answer.status_code == 201, answer.text
                alive[answer.json()["pk"]] = object_id
                if rng.random() < 0.3:
                    victim = rng.choice(sorted(alive))
                    assert client.delete(f"{base}{victim}/").status_code == 204
                    del alive[victim]
                    deleted.add(victim)
                    parked.discard(victim)
                if step % 10 == 9:
                    mine = ",".join(str(o) for o in alive.values())
                    answer = client.post(f"{base}park/?object_id__in={mine}")
                    assert answer.status_code == 200, answer.text
                    # Its own records, not parked yet, existing when it asked: no one else's.
                    assert answer.json()["affected"] == len(set(alive) - parked)
                    parked |= set(alive)
        return {"alive": set(alive), "deleted": deleted, "parked": parked}

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(client_work, range(1, 7)))

    stored = dict(FailedIntegration.objects.values_list("pk", "parked"))
    for result in results:
        assert result["alive"] <= set(stored)  # every 201 exists
        assert not result["deleted"] & set(stored)  # every 204 is gone
        assert {pk for pk in result["alive"] if stored[pk]} == result["parked"]
    assert set(stored) == set().union(*(result["alive"] for result in results))


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres_only
def test_concurrent_reports_of_one_object_leave_only_the_newest_active(
    client_factory, channel, product_type
):
    base = f"/api/v1/channel/{channel.pk}/failed_integrations/"

    def report(day: int) -> int:
        with client_factory() as client:
            return client.post(
                base,
                json={
                    "version_date": f"2025-01-{day:02d}T00:00:00Z",
                    "reason_type": "remote",
                    "content_type": product_type.pk,
                    "object_id": 77,
                },
            ).status_code

    for _ in range(5):
        days = random.sample(range(1, 29), 8)
        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(report, days)) == [201] * 8
        active = FailedIntegration.objects.filter(object_id=77, is_active=True)
        assert [record.version_date.day for record in active] == [max(days)]
        FailedIntegration.objects.all().delete()
