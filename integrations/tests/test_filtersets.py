"""Every filter of the list, with the exact records it answers, on a small known data set."""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType

from integrations.filtersets import FailedIntegrationFilterSet
from integrations.models import FailedIntegration

pytestmark = pytest.mark.django_db


def answered(channel, params: dict) -> set[int]:
    filterset = FailedIntegrationFilterSet(
        params, queryset=FailedIntegration.objects.filter(channel=channel)
    )
    assert filterset.is_valid(), filterset.errors
    return set(filterset.qs.values_list("pk", flat=True))


CASES = [
    ("pk__in", lambda r: f"{r['a'].pk},{r['c'].pk}", "ac"),
    ("channel", lambda r: str(r["a"].channel_id), "abcd"),
    ("reason_type", "remote", "bc"),
    ("reason_type__in", "mapping,channel_app", "ad"),
    ("is_active", "false", "c"),
    ("is_active", "True", "abd"),
    ("content_type", lambda r: str(ContentType.objects.get(model="order").pk), "cd"),
    ("content_type", "orders.order", "cd"),
    ("content_type__in", lambda r: f"products.product,{r['d'].content_type_id}", "abcd"),
    ("object_id", "1", "ad"),
    ("object_id__in", "2,3", "bc"),
    ("integration_action", lambda r: str(r["action"].pk), "a"),
    ("integration_action__isnull", "true", "bcd"),
    ("log_id", "20", "b"),
    ("log_id__isnull", "true", "cd"),
    ("expiration_date__isnull", "true", "a"),
    ("version_date", "2025-01-02T00:00:00Z", "b"),
    ("version_date__gt", "2025-01-02T00:00:00Z", "cd"),
    ("version_date__gte", "2025-01-02T00:00:00Z", "bcd"),
    ("version_date__lt", "2025-01-02T00:00:00Z", "a"),
    ("version_date__lte", "2025-01-02T03:00:00+03:00", "ab"),
    ("expiration_date", "2020-01-01T00:00:00Z", "b"),
    ("expiration_date__gt", "2020-06-01T00:00:00Z", "cd"),
    ("expiration_date__gte", "2021-01-01T00:00:00Z", "cd"),
    ("expiration_date__lt", "2021-01-01T00:00:00Z", "b"),
    ("expiration_date__lte", "2021-01-01T00:00:00Z", "bd"),
    ("created_date", "2025-02-03T00:00:00Z", "c"),
    ("created_date__gt", "2025-02-03T00:00:00Z", "d"),
    ("created_date__gte", "2025-02-03T00:00:00Z", "cd"),
    ("created_date__lt", "2025-02-02T00:00:00Z", "a"),
    ("created_date__lte", "2025-02-02T00:00:00Z", "ab"),
    ("modified_date", "2025-03-04T00:00:00Z", "d"),
    ("modified_date__gt", "2025-03-01T00:00:00Z", "bcd"),
    ("modified_date__gte", "2025-03-04T00:00:00Z", "d"),
    ("modified_date__lt", "2025-03-03T00:00:00Z", "ab"),
    ("modified_date__lte", "2025-03-03T00:00:00Z", "abc"),
    ("retry_count", "2", "c"),
    ("retry_count__gt", "1", "cd"),
    ("retry_count__gte", "1", "bcd"),
    ("retry_count__lt", "1", "a"),
    ("retry_count__lte", "1", "ab"),
    ("max_retry_count", "1", "ab"),
    ("max_retry_count__gt", "3", "c"),
    ("max_retry_count__gte", "3", "cd"),
    ("max_retry_count__lt", "3", "ab"),
    ("max_retry_count__lte", "3", "abd"),
    ("retry_interval", "60", "b"),
    ("retry_interval__gt", "60", "cd"),
    ("retry_interval__gte", "60", "bcd"),
    ("retry_interval__lt", "60", "a"),
    ("retry_interval__lte", "60", "ab"),
    ("exhausted", "true", "bd"),
    ("exhausted", "false", "ac"),
    ("expired", "true", "bd"),
    ("expired", "false", "ac"),
    ("parked", "true", "d"),
    ("parked", "false", "abc"),
    # a: active, scheduled, but its channel has no retry endpoint; b, d: past expiration.
    ("state", "pending", "a"),
    ("state", "expired", "bd"),
    ("state", "resolved", "c"),
    ("state", "exhausted", ""),
    ("state__in", "pending,resolved", "ac"),
    ("next_retry_at", "2025-04-01T00:00:00Z", "a"),
    ("next_retry_at__isnull", "true", "bcd"),
    ("next_retry_at__gt", "2025-03-01T00:00:00Z", "a"),
    ("next_retry_at__gte", "2025-04-01T00:00:01Z", ""),
    ("next_retry_at__lt", "2025-04-01T00:00:01Z", "a"),
    ("next_retry_at__lte", "2025-03-31T00:00:00Z", ""),
    ("last_attempt_at", "2025-03-10T00:00:00Z", "a"),
    ("last_attempt_at__gt", "2025-03-09T00:00:00Z", "a"),
    ("last_attempt_at__gte", "2025-03-11T00:00:00Z", ""),
    ("last_attempt_at__lt", "2025-03-11T00:00:00Z", "a"),
    ("last_attempt_at__lte", "2025-03-09T00:00:00Z", ""),
    ("resolved_at", "2025-05-01T00:00:00Z", "c"),
    ("resolved_at__gt", "2025-04-01T00:00:00Z", "c"),
    ("resolved_at__gte", "2025-05-02T00:00:00Z", ""),
    ("resolved_at__lt", "2025-05-02T00:00:00Z", "c"),
    ("resolved_at__lte", "2025-04-30T00:00:00Z", ""),
]


@pytest.mark.parametrize(("param", "value", "expected"), CASES)
def test_filter(channel, records, param, value, expected):
    value = value(records) if callable(value) else value

    assert answered(channel, {param: value}) == {records[name].pk for name in expected}


def test_every_filter_has_a_case():
    tested = {param for param, _, _ in CASES}
    declared = set(FailedIntegrationFilterSet.base_filters) - {"sort"}

    assert declared == tested


def test_every_model_field_has_a_filter():
    """Fails when a field is added to the model without a filter for it."""
    filtered = {flt.field_name for flt in FailedIntegrationFilterSet.base_filters.values()}
    unfiltered = [
        field.name
        for field in FailedIntegration._meta.concrete_fields
        if not {field.name, field.attname, "pk" if field.primary_key else None} & filtered
    ]

    assert set(unfiltered) == set(NOT_FILTERED)


# Fields that deliberately have no filter of their own, and why.
NOT_FILTERED = {
    "resolution": "the `state` filter answers it (resolved, superseded, expired)",
    "last_error": "free text of a channel app's answer",
    "lease_owner": "the engine's own bookkeeping",
    "lease_expires_at": "the engine's own bookkeeping (`state=in_progress` answers it)",
}


def test_filters_combine(channel, records):
    assert answered(channel, {"reason_type": "remote", "is_active": "true"}) == {records["b"].pk}


def test_unknown_parameters_are_ignored(channel, records):
    assert answered(channel, {"colour": "red"}) == {records[n].pk for n in "abcd"}


def test_a_plus_read_as_a_space_in_an_offset_is_understood(channel, records):
    # `?version_date__lte=2025-01-02T03:00:00+03:00` unencoded: the `+` arrives as a space.
    assert answered(channel, {"version_date__lte": "2025-01-02T03:00:00 03:00"}) == {
        records["a"].pk,
        records["b"].pk,
    }


def test_a_date_time_beyond_the_years_in_utc_compares_as_the_earliest_or_latest(channel, records):
    everything = {records[n].pk for n in "abcd"}

    assert answered(channel, {"created_date__gte": "0001-01-01T00:00:00+01:00"}) == everything
    assert answered(channel, {"created_date__lt": "0001-01-01T00:00:00+01:00"}) == set()
    assert answered(channel, {"created_date__lte": "9999-12-31T23:59:59-01:00"}) == everything


# --- through the API: errors and sorting ------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("reason_type", "timeout"),
        ("reason_type__in", "remote,nope"),
        ("is_active", "maybe"),
        ("exhausted", "2"),
        ("expired", "yes please"),
        ("content_type", "nothing.here"),
        ("content_type", "999999"),
        ("content_type", "-1"),
        ("content_type__in", "1,x"),
        ("object_id", "abc"),
        ("object_id", "1.5"),
        ("object_id", "-1"),
        ("object_id", "9" * 25),
        ("object_id__in", "1,,x"),
        ("object_id__in", ",".join(["1"] * 1001)),
        ("pk__in", "0"),
        ("log_id", "1e3"),
        ("integration_action__isnull", "sometimes"),
        ("version_date__gte", "yesterday"),
        ("version_date", "2025-06-27"),
        ("retry_count__gte", "-1"),
        ("max_retry_count", str(2**31)),
        ("retry_interval__lt", "x"),
        ("channel", "1; DROP TABLE x"),
        ("sort", "colour"),
        ("sort", "-reason_type"),
        ("sort", "pk,,"),
    ],
)
def test_fail_bad_value_answers_400_naming_the_parameter(api_client, channel, param, value):
    response = api_client.get(f"/api/v1/channel/{channel.pk}/failed_integrations/", {param: value})

    assert response.status_code == 400, response.content
    assert list(response.json()) == [param]


def listed(api_client, channel, **params) -> list[int]:
    body = api_client.get(
        f"/api/v1/channel/{channel.pk}/failed_integrations/", {"limit": 100, **params}
    ).json()
    return [row["pk"] for row in body["results"]]


@pytest.mark.parametrize(
    ("sort", "order"),
    [
        ("pk", "abcd"),
        ("-pk", "dcba"),
        ("version_date", "abcd"),
        ("-version_date", "dcba"),
        ("expiration_date", "bdca"),  # nulls last ascending
        ("-expiration_date", "acdb"),
        ("retry_count", "abcd"),
        ("-retry_count", "dcba"),
        ("created_date", "abcd"),
        ("-modified_date", "dcba"),
    ],
)
def test_sort(api_client, channel, records, sort, order):
    assert listed(api_client, channel, sort=sort) == [records[name].pk for name in order]


def test_sort_by_several_fields_and_ties_break_on_pk(api_client, channel, records):
    FailedIntegration.objects.filter(channel=channel).update(retry_count=1)
    FailedIntegration.objects.filter(pk=records["b"].pk).update(retry_count=0)

    assert listed(api_client, channel, sort="retry_count,-version_date") == [
        records[name].pk for name in "bdca"
    ]
    assert listed(api_client, channel, sort="-retry_count") == [records[name].pk for name in "dcab"]


def test_filtered_list_counts_and_pages_the_filtered_records(api_client, channel, records):
    body = api_client.get(
        f"/api/v1/channel/{channel.pk}/failed_integrations/",
        {"reason_type": "remote", "limit": 1},
    ).json()

    assert body["count"] == 2
    assert [row["pk"] for row in body["results"]] == [records["b"].pk]
    assert "reason_type=remote" in body["next"] and "page=2" in body["next"]
