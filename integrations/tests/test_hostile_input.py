"""Hostile input: whatever arrives, the answer is a JSON 4xx (or a success), never a 500."""

from __future__ import annotations

import json
import string

import orjson
import pytest
from django.http import QueryDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ValidationError

from common.fields import parse_datetime_utc
from integrations.query import FILTERS, ListQuery
from integrations.validation import validate_item

pytestmark = pytest.mark.django_db

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "version_date",
        "reason_type",
        "content_type",
        "object_id",
        "channel",
        "is_active",
        "expiration_date",
        "retry_count",
        "max_retry_count",
        "retry_interval",
        "integration_action",
        "log_id",
        "pk",
        "x",
    ]
)
items = st.dictionaries(field_names, json_values, max_size=8) | json_values
nasty_text = st.text(
    alphabet=st.characters(codec="utf-8") | st.sampled_from(["\x00", "'", '"', ";", "-", "%"]),
    max_size=60,
) | st.sampled_from(["1; DROP TABLE x --", "' OR 1=1 --", "2025-01-01T00:00:00+99:99", "9" * 40])
parameters = st.sampled_from([*FILTERS, "sort", "page", "limit", "cursor", "group_by"])
FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@FAST
@given(item=items)
def test_validating_any_item_answers_values_or_errors(item):
    values, errors = validate_item(item, channel_id=1)

    assert isinstance(values, dict) and isinstance(errors, dict)
    assert all(isinstance(messages, list) and messages for messages in errors.values())


@FAST
@given(text=nasty_text)
def test_parsing_any_text_as_a_date_time_answers_a_date_time_or_value_error(text):
    try:
        value = parse_datetime_utc(text)
    except (ValueError, OverflowError):
        return
    assert value.utcoffset().total_seconds() == 0


@FAST
@given(params=st.dictionaries(parameters, nasty_text, max_size=4))
def test_reading_any_query_answers_a_query_or_a_400(params):
    query = QueryDict(mutable=True)
    query.update(params)
    try:
        ListQuery.from_params(query)
    except ValidationError as error:
        assert set(error.detail) <= set(params)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(params=st.dictionaries(parameters, nasty_text, max_size=3))
def test_any_list_query_answers_json_below_500(api_client, channel, params):
    for path in ("", "stats/"):
        response = api_client.get(
            f"/api/v1/channel/{channel.pk}/failed_integrations/{path}", params
        )
        assert response.status_code < 500, (params, response.content)
        orjson.loads(response.content)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_body_answers_json_below_500(api_client, channel, body):
    for path in ("", "bulk/", "retry/"):
        response = api_client.generic(
            "POST",
            f"/api/v1/channel/{channel.pk}/failed_integrations/{path}",
            body,
            content_type="application/json",
        )
        assert response.status_code < 500, (body, response.content)
        orjson.loads(response.content)


@pytest.mark.parametrize(
    "params",
    [
        {"content_type": "products\x00.product"},
        {"reason_type": "remote\x00"},
        {"object_id": "1; DROP TABLE integrations_failedintegration"},
        {"sort": "-" * 5000},
        {"version_date__gte": "2" * 10000},
        {"limit": "0"},
        {"limit": "-1"},
        {"page": "9" * 99},
        {"cursor": "\x00"},
        {"group_by": "reason_type\x00"},
        {"state__in": ",".join(["due"] * 1000)},
    ],
)
def test_edge_parameters_answer_json_below_500(api_client, channel, params):
    for path in ("", "stats/"):
        response = api_client.get(
            f"/api/v1/channel/{channel.pk}/failed_integrations/{path}", params
        )
        assert response.status_code < 500
        assert response["Content-Type"] == "application/json"


def test_printable_junk_in_the_authorization_header_answers_401(anonymous_client, channel):
    for junk in ["Token \x00", "Token " + string.printable, "Token " + "é" * 50, "\x00" * 10]:
        response = anonymous_client.get(
            f"/api/v1/channel/{channel.pk}/failed_integrations/", HTTP_AUTHORIZATION=junk
        )
        assert response.status_code == 401
