"""The six operations of the contract, their answers and every class of bad input."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import OperationalError
from django.test import override_settings

from conftest import VERSION_DATE
from integrations.models import FailedIntegration
from integrations.records import registry

pytestmark = pytest.mark.django_db


def list_url(channel_id: int) -> str:
    return f"/api/v1/channel/{channel_id}/failed_integrations/"


def detail_url(channel_id: int, pk: int) -> str:
    return f"/api/v1/channel/{channel_id}/failed_integrations/{pk}/"


@pytest.fixture
def payload(channel, product_type) -> dict:
    return {
        "channel": channel.pk,
        "version_date": "2025-06-27T08:38:26.936Z",
        "reason_type": "remote",
        "content_type": product_type.pk,
        "object_id": 1001,
    }


def utc(value):
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value else None


def record_json(failed: FailedIntegration, state: str = "exhausted") -> dict:
    """The answer for `failed` as stored: each answered field of the registry, a date-time in UTC
    with microseconds and a `Z`; `state`: what the test expects it to be (a record made with the
    defaults, one attempt of one allowed, is exhausted)."""
    failed.refresh_from_db()
    answer = {}
    for field in registry.ANSWERED:
        if field.kind == registry.STATE:
            answer[field.name] = state
        elif field.kind == registry.DATETIME:
            answer[field.name] = utc(getattr(failed, field.target))
        else:
            answer[field.name] = getattr(failed, field.target)
    return answer


# --- list -------------------------------------------------------------------------------------


def test_list_empty(api_client, channel):
    response = api_client.get(list_url(channel.pk))

    assert response.status_code == 200
    assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}


def test_list_answers_the_channels_records_in_pk_order(
    api_client, channel, other_channel, make_failed
):
    second = make_failed(object_id=2)
    first = make_failed(object_id=1)
    make_failed(channel=other_channel, object_id=3)

    response = api_client.get(list_url(channel.pk))

    assert response.status_code == 200
    assert response.json() == {
        "count": 2,
        "next": None,
        "previous": None,
        "results": [record_json(second), record_json(first)],
    }


def test_list_pages_with_absolute_links(api_client, channel, make_failed):
    records = [make_failed(object_id=n) for n in range(25)]

    first = api_client.get(list_url(channel.pk)).json()
    second = api_client.get(first["next"]).json()
    third = api_client.get(second["next"]).json()

    assert first["count"] == 25
    assert [r["pk"] for r in first["results"]] == [r.pk for r in records[:10]]
    assert first["next"] == f"http://testserver{list_url(channel.pk)}?page=2"
    assert first["previous"] is None
    assert [r["pk"] for r in second["results"]] == [r.pk for r in records[10:20]]
    assert second["previous"] == f"http://testserver{list_url(channel.pk)}"
    assert [r["pk"] for r in third["results"]] == [r.pk for r in records[20:]]
    assert third["next"] is None
    assert third["previous"] == f"http://testserver{list_url(channel.pk)}?page=2"


def test_list_limit_is_kept_in_links(api_client, channel, make_failed):
    for n in range(5):
        make_failed(object_id=n)

    body = api_client.get(list_url(channel.pk), {"limit": 2, "page": 2}).json()

    assert len(body["results"]) == 2
    assert body["next"] == f"http://testserver{list_url(channel.pk)}?limit=2&page=3"
    assert body["previous"] == f"http://testserver{list_url(channel.pk)}?limit=2"


@override_settings(PAGE_SIZE_MAX=3)
def test_list_limit_is_clamped_to_the_maximum(api_client, channel, make_failed):
    for n in range(5):
        make_failed(object_id=n)

    body = api_client.get(list_url(channel.pk), {"limit": 10**30}).json()

    assert len(body["results"]) == 3
    assert body["count"] == 5


def test_list_page_past_the_end_answers_404(api_client, channel, make_failed):
    make_failed()

    for page in (2, 10**40):
        response = api_client.get(list_url(channel.pk), {"page": page})
        assert response.status_code == 404
        assert response.json() == {"detail": "Invalid page.", "code": "not_found"}


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        ("page", "0", "Ensure this value is greater than or equal to 1."),
        ("page", "-1", "Ensure this value is greater than or equal to 1."),
        ("page", "abc", "A valid integer is required."),
        ("page", "1.5", "A valid integer is required."),
        ("limit", "0", "Ensure this value is greater than or equal to 1."),
        ("limit", "-5", "Ensure this value is greater than or equal to 1."),
        ("limit", "ten", "A valid integer is required."),
        ("limit", "5\n", "A valid integer is required."),  # `$` would take the newline
        ("page", "\u0663", "A valid integer is required."),  # an Arabic-Indic three
        ("limit", "9" * 101, "Ensure this value has at most 100 characters."),
        ("channel", "x", "A valid integer is required."),
    ],
)
def test_fail_list_bad_parameter_answers_400_naming_it(api_client, channel, param, value, message):
    response = api_client.get(list_url(channel.pk), {param: value})

    assert response.status_code == 400
    assert response.json() == {param: [message]}


def test_list_channel_parameter(api_client, channel, other_channel, make_failed):
    make_failed()

    same = api_client.get(list_url(channel.pk), {"channel": channel.pk}).json()
    other = api_client.get(list_url(channel.pk), {"channel": other_channel.pk}).json()

    assert same["count"] == 1
    assert other == {"count": 0, "next": None, "previous": None, "results": []}


def test_list_ignores_unknown_parameters(api_client, channel, make_failed):
    make_failed()

    response = api_client.get(list_url(channel.pk), {"no_such_filter": "1"})

    assert response.status_code == 200
    assert response.json()["count"] == 1


# --- create -----------------------------------------------------------------------------------


def test_create_answers_201_with_the_whole_object(api_client, channel, payload):
    response = api_client.post(list_url(channel.pk), payload, format="json")

    assert response.status_code == 201
    failed = FailedIntegration.objects.get()
    assert response.json() == record_json(failed)
    defaults = {
        "pk": 0,
        "channel": channel.pk,
        "version_date": "2025-06-27T08:38:26.936000Z",
        "reason_type": "remote",
        "is_active": True,
        "content_type": payload["content_type"],
        "object_id": 1001,
        "expiration_date": None,
        "retry_count": 1,
        "max_retry_count": 1,
        "retry_interval": 0,
        "integration_action": None,
        "log_id": None,
        "created_date": "",
        "modified_date": "",
        "state": "exhausted",
        "next_retry_at": None,
        "last_attempt_at": None,
        "last_error": "",
        "resolved_at": None,
    }
    # A field added since holds its model's default.
    defaults |= {
        field.name: field.model_field.get_default()
        for field in registry.ANSWERED
        if field.name not in defaults
    }
    assert response.json() | {"pk": 0, "created_date": "", "modified_date": ""} == defaults


def test_create_with_every_field(api_client, channel, payload, integration_action):
    payload |= {
        "is_active": False,
        "expiration_date": "2026-01-01T00:00:00Z",
        "retry_count": 2,
        "max_retry_count": 5,
        "retry_interval": 60,
        "integration_action": integration_action.pk,
        "log_id": 2**63 - 1,
        "object_id": 2**63 - 1,
    }

    response = api_client.post(list_url(channel.pk), payload, format="json")

    assert response.status_code == 201, response.json()
    failed = FailedIntegration.objects.get()
    assert failed.is_active is False
    assert failed.expiration_date == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert (failed.retry_count, failed.max_retry_count, failed.retry_interval) == (2, 5, 60)
    assert failed.integration_action == integration_action
    assert failed.log_id == failed.object_id == 2**63 - 1


def test_create_takes_the_channel_from_the_url(api_client, channel, payload):
    del payload["channel"]

    response = api_client.post(list_url(channel.pk), payload, format="json")

    assert response.status_code == 201
    assert response.json()["channel"] == channel.pk


def test_fail_create_for_another_channel(api_client, channel, other_channel, payload):
    payload["channel"] = other_channel.pk

    response = api_client.post(list_url(channel.pk), payload, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "channel": [f"Must be the channel of the URL ({channel.pk}) or left out."]
    }
    assert not FailedIntegration.objects.exists()


def test_fail_create_with_unknown_content_type(api_client, channel, payload):
    payload["content_type"] = 999_999

    response = api_client.post(list_url(channel.pk), payload, format="json")

    assert response.status_code == 400
    assert list(response.json()) == ["content_type"]
    assert "999999" in response.json()["content_type"][0]


def test_fail_create_with_unknown_integration_action(api_client, channel, payload):
    payload["integration_action"] = 999_999

    response = api_client.post(list_url(channel.pk), payload, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "integration_action": ['Invalid pk "999999" - object does not exist.']
    }


def test_fail_create_with_another_channels_integration_action(
    api_client, channel, other_channel, payload, product_type
):
    from integrations.models import IntegrationAction

    foreign = IntegrationAction.objects.create(
        channel=other_channel, content_type=product_type, object_id=1
    )
    missing = foreign.pk + 1000
    answers = {}
    for action_id in (foreign.pk, missing):
        payload["integration_action"] = action_id
        response = api_client.post(list_url(channel.pk), payload, format="json")
        answers[action_id] = response.status_code, response.json()

    # Another channel's action answers exactly as one that does not exist: no channel learns
    # which actions others have.
    assert answers[foreign.pk] == (
        400,
        {"integration_action": [f'Invalid pk "{foreign.pk}" - object does not exist.']},
    )
    assert answers[missing] == (
        400,
        {"integration_action": [f'Invalid pk "{missing}" - object does not exist.']},
    )
    assert not FailedIntegration.objects.filter(channel=channel).exists()


def test_fail_create_without_required_fields(api_client, channel):
    response = api_client.post(list_url(channel.pk), {}, format="json")

    assert response.status_code == 400
    assert response.json() == {
        name: ["This field is required."]
        for name in ("version_date", "reason_type", "content_type", "object_id")
    }


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("reason_type", "timeout", '"timeout" is not a valid choice.'),
        ("reason_type", "x" * 16, f'"{"x" * 16}" is not a valid choice.'),
        ("reason_type", 1, '"1" is not a valid choice.'),
        ("retry_count", -1, "Ensure this value is greater than or equal to 0."),
        ("max_retry_count", -1, "Ensure this value is greater than or equal to 0."),
        ("retry_interval", -1, "Ensure this value is greater than or equal to 0."),
        ("retry_count", 2**31, "Ensure this value is less than or equal to 2147483647."),
        ("object_id", -1, "Ensure this value is greater than or equal to 0."),
        ("object_id", 2**63, "Ensure this value is less than or equal to 9223372036854775807."),
        ("object_id", 2**64, "Ensure this value is less than or equal to 9223372036854775807."),
        ("log_id", 10**30, "Ensure this value is less than or equal to 9223372036854775807."),
        ("object_id", "5", "A valid integer is required."),
        ("object_id", 1.5, "A valid integer is required."),
        ("object_id", 1.0, "A valid integer is required."),
        ("object_id", True, "A valid integer is required."),
        ("object_id", None, "This field may not be null."),
        ("retry_count", [], "A valid integer is required."),
        ("is_active", "true", "Must be a boolean (true or false)."),
        ("is_active", 1, "Must be a boolean (true or false)."),
        ("content_type", "1", "A valid integer is required."),
        ("integration_action", {}, "A valid integer is required."),
        ("channel", "1", "A valid integer is required."),
    ],
)
def test_fail_create_with_a_bad_value_names_the_field(
    api_client, channel, payload, field, value, message
):
    payload[field] = value

    response = api_client.post(list_url(channel.pk), payload, format="json")

    assert response.status_code == 400
    assert response.json() == {field: [message]}
    assert not FailedIntegration.objects.exists()


@pytest.mark.parametrize(
    "value",
    [
        "27/06/2025",
        "2025-06-27",
        "2025-06-27 08:38:26",
        "2025-13-01T00:00:00Z",
        "2025-06-27T25:00:00Z",
        "2025-06-27T08:38:26+25:00",
        "0000-01-01T00:00:00Z",
        "",
        12345,
        None,
    ],
)
def test_fail_create_with_an_unparseable_date_time(api_client, channel, payload, value):
    payload["version_date"] = value

    response = api_client.post(list_url(channel.pk), payload, format="json")

    assert response.status_code == 400
    assert list(response.json()) == ["version_date"]


@pytest.mark.parametrize("value", ["0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00"])
def test_fail_create_with_a_date_time_out_of_range_in_utc(api_client, channel, payload, value):
    payload["version_date"] = value

    response = api_client.post(list_url(channel.pk), payload, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "version_date": ["Datetime value out of range (years 0001 to 9999 in UTC)."]
    }


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("2025-06-27T11:38:26.936+03:00", "2025-06-27T08:38:26.936000Z"),
        ("2025-06-27T08:38:26.936", "2025-06-27T08:38:26.936000Z"),
        ("2025-06-27T08:38:26Z", "2025-06-27T08:38:26.000000Z"),
        ("2025-06-27t03:38:26.1234567-05:00", "2025-06-27T08:38:26.123456Z"),
    ],
)
def test_date_times_are_converted_to_utc(api_client, channel, payload, given, stored):
    payload["version_date"] = given

    response = api_client.post(list_url(channel.pk), payload, format="json")

    assert response.status_code == 201
    assert response.json()["version_date"] == stored
    assert (
        api_client.get(detail_url(channel.pk, response.json()["pk"])).json()["version_date"]
        == stored
    )


# --- bodies that are not a JSON object ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "detail_start"),
    [
        (b'{"reason_type": ', "JSON parse error"),
        (b'{"a": NaN}', "JSON parse error"),
        (b'{"a": "\xff"}', "JSON parse error"),
        (b"[" * 5000 + b"]" * 5000, "JSON parse error"),
        (b"   ", "A JSON request body is required."),
    ],
)
def test_fail_create_with_a_malformed_body(api_client, channel, body, detail_start):
    response = api_client.generic(
        "POST", list_url(channel.pk), body, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["detail"].startswith(detail_start)
    assert response.json()["code"] == "parse_error"


@pytest.mark.parametrize("body", [b"[]", b"[{}]", b'"text"', b"42", b"null"])
def test_fail_create_with_a_body_that_is_not_an_object(api_client, channel, body):
    response = api_client.generic(
        "POST", list_url(channel.pk), body, content_type="application/json"
    )

    assert response.status_code == 400
    assert list(response.json()) == ["non_field_errors"]


def test_fail_create_without_a_body(api_client, channel):
    response = api_client.generic("POST", list_url(channel.pk))

    assert response.status_code == 400
    assert response.json() == {"detail": "A JSON request body is required.", "code": "parse_error"}


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""],
)
def test_fail_create_with_an_unsupported_media_type(api_client, channel, payload, content_type):
    response = api_client.generic(
        "POST", list_url(channel.pk), b'{"a": 1}', content_type=content_type
    )

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


@override_settings(MAX_REQUEST_BODY_BYTES=2048)
def test_fail_create_with_a_body_too_large(api_client, channel, payload):
    payload["padding"] = "x" * 4096

    response = api_client.post(list_url(channel.pk), payload, format="json")

    assert response.status_code == 413
    assert response.json() == {
        "detail": "Request body is larger than 2048 bytes.",
        "code": "request_too_large",
    }
    assert not FailedIntegration.objects.exists()


# --- retrieve, update, delete -----------------------------------------------------------------


def test_retrieve(api_client, channel, make_failed):
    failed = make_failed()

    response = api_client.get(detail_url(channel.pk, failed.pk))

    assert response.status_code == 200
    assert response.json() == record_json(failed)


def test_fail_retrieve_another_channels_record(api_client, channel, other_channel, make_failed):
    foreign = make_failed(channel=other_channel)

    response = api_client.get(detail_url(channel.pk, foreign.pk))

    assert response.status_code == 404
    assert response.json() == {"detail": "Failed integration not found.", "code": "not_found"}


@pytest.mark.parametrize("pk", [999_999, 2**63, 10**30])
def test_fail_retrieve_unknown_record(api_client, channel, pk):
    response = api_client.get(detail_url(channel.pk, pk))

    assert response.status_code == 404
    assert response.json()["detail"] == "Failed integration not found."


def test_put_replaces_the_given_fields(api_client, channel, make_failed, order_type):
    failed = make_failed(retry_count=3, log_id=7)
    body = {
        "pk": 12345,
        "channel": channel.pk,
        "version_date": "2026-01-02T03:04:05Z",
        "reason_type": "mapping",
        "content_type": order_type.pk,
        "object_id": 77,
    }

    response = api_client.put(detail_url(channel.pk, failed.pk), body, format="json")

    assert response.status_code == 200
    assert response.json() == record_json(failed)
    assert response.json()["pk"] == failed.pk
    assert (failed.reason_type, failed.content_type_id, failed.object_id) == (
        "mapping",
        order_type.pk,
        77,
    )
    assert failed.version_date == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    # Fields a PUT leaves out keep their values, as the original API does.
    assert (failed.retry_count, failed.log_id) == (3, 7)


def test_fail_put_without_required_fields(api_client, channel, make_failed):
    failed = make_failed()

    response = api_client.put(
        detail_url(channel.pk, failed.pk), {"is_active": False}, format="json"
    )

    assert response.status_code == 400
    assert set(response.json()) == {"version_date", "reason_type", "content_type", "object_id"}
    failed.refresh_from_db()
    assert failed.is_active is True


def test_patch_changes_only_the_given_fields(api_client, channel, make_failed):
    failed = make_failed(retry_count=1, max_retry_count=3)
    before = record_json(failed, state="pending")

    response = api_client.patch(
        detail_url(channel.pk, failed.pk),
        {"retry_count": 2, "expiration_date": "2026-01-01T00:00:00+02:00"},
        format="json",
    )

    assert response.status_code == 200
    after = record_json(failed, state="expired")  # its expiration date is in the past
    assert response.json() == after
    assert after["retry_count"] == 2
    assert after["expiration_date"] == "2025-12-31T22:00:00.000000Z"
    changed = {"retry_count", "expiration_date", "modified_date", "state"}
    assert {k: v for k, v in after.items() if k not in changed} == {
        k: v for k, v in before.items() if k not in changed
    }
    assert after["modified_date"] > before["modified_date"]


def test_patch_clears_a_nullable_field(api_client, channel, make_failed, integration_action):
    failed = make_failed(
        expiration_date=VERSION_DATE, integration_action=integration_action, log_id=3
    )

    response = api_client.patch(
        detail_url(channel.pk, failed.pk),
        {"expiration_date": None, "integration_action": None, "log_id": None},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["expiration_date"] is None
    assert response.json()["integration_action"] is None
    assert response.json()["log_id"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"is_active": None}, "is_active"),
        ({"retry_count": -3}, "retry_count"),
        ({"channel": 0}, "channel"),
        ({"reason_type": "other"}, "reason_type"),
        ({"content_type": 0}, "content_type"),
    ],
)
def test_fail_patch_with_a_bad_value(api_client, channel, make_failed, body, field):
    failed = make_failed()

    response = api_client.patch(detail_url(channel.pk, failed.pk), body, format="json")

    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_fail_patch_another_channels_record(api_client, channel, other_channel, make_failed):
    foreign = make_failed(channel=other_channel)

    response = api_client.patch(
        detail_url(channel.pk, foreign.pk), {"is_active": False}, format="json"
    )

    assert response.status_code == 404
    foreign.refresh_from_db()
    assert foreign.is_active is True


def test_delete(api_client, channel, make_failed):
    failed = make_failed()

    response = api_client.delete(detail_url(channel.pk, failed.pk))

    assert response.status_code == 204
    assert response.content == b""
    assert api_client.get(detail_url(channel.pk, failed.pk)).status_code == 404
    assert not FailedIntegration.objects.filter(pk=failed.pk).exists()


def test_fail_delete_another_channels_record(api_client, channel, other_channel, make_failed):
    foreign = make_failed(channel=other_channel)

    assert api_client.delete(detail_url(channel.pk, foreign.pk)).status_code == 404
    assert FailedIntegration.objects.filter(pk=foreign.pk).exists()


# --- a channel that does not exist ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/channel/{c}/failed_integrations/"),
        ("post", "/api/v1/channel/{c}/failed_integrations/"),
        ("get", "/api/v1/channel/{c}/failed_integrations/{pk}/"),
        ("put", "/api/v1/channel/{c}/failed_integrations/{pk}/"),
        ("patch", "/api/v1/channel/{c}/failed_integrations/{pk}/"),
        ("delete", "/api/v1/channel/{c}/failed_integrations/{pk}/"),
    ],
)
@pytest.mark.parametrize("missing_channel", [999_999, 2**63, 10**25])
def test_fail_unknown_channel_answers_404_on_every_operation(
    api_client, make_failed, payload, method, path, missing_channel
):
    failed = make_failed()

    response = getattr(api_client, method)(
        path.format(c=missing_channel, pk=failed.pk), payload, format="json"
    )

    assert response.status_code == 404
    assert response.json() == {"detail": "Channel not found.", "code": "not_found"}


# --- routes, methods and faults ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nowhere/",
        "/api/v1/channel/abc/failed_integrations/",
        "/api/v1/channel/1/failed_integrations",
        "/api/v1/channel/-1/failed_integrations/",
        "/nowhere/",
    ],
)
def test_fail_unknown_route_answers_json_404(api_client, path):
    response = api_client.get(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found.", "code": "not_found"}


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("put", "/api/v1/channel/{c}/failed_integrations/", "GET, POST, HEAD, OPTIONS"),
        ("delete", "/api/v1/channel/{c}/failed_integrations/", "GET, POST, HEAD, OPTIONS"),
        (
            "post",
            "/api/v1/channel/{c}/failed_integrations/1/",
            "GET, PUT, PATCH, DELETE, HEAD, OPTIONS",
        ),
    ],
)
def test_fail_wrong_method_answers_json_405(api_client, channel, method, path, allowed):
    response = getattr(api_client, method)(path.format(c=channel.pk))

    assert response.status_code == 405
    assert response["Allow"] == allowed
    assert response.json()["code"] == "method_not_allowed"


def test_fail_server_fault_answers_json_500_without_traceback(
    api_client, channel, payload, monkeypatch
):
    from integrations.lifecycle import policies

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    # Scheduling is part of every report's path (the regular view's and PostgreSQL's fast one).
    monkeypatch.setattr(policies, "schedule", broken)
    api_client.raise_request_exception = False

    response = api_client.post(list_url(channel.pk), payload, format="json")

    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "A server error occurred.", "code": "server_error"}
    assert b"secret internals" not in response.content
    assert b"Traceback" not in response.content


def test_fail_database_unavailable_answers_503(api_client, channel, monkeypatch):
    from integrations.reads import selectors

    def unreachable(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(selectors, "failed_integration_get", unreachable)

    response = api_client.get(detail_url(channel.pk, 1))

    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert response.json() == {
        "detail": "The database is unavailable; retry shortly.",
        "code": "database_unavailable",
    }
