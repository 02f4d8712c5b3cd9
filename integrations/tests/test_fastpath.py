"""The read fast path (PostgreSQL) answers exactly what the regular views answer, in one
statement."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIRequestFactory, force_authenticate

from integrations import fastpath
from integrations.api.views import FailedIntegrationDetailView, FailedIntegrationListView
from integrations.query import FILTERS
from integrations.tests.test_filtersets import CASES

pytestmark = [pytest.mark.django_db, pytest.mark.postgres_only]


def regular_answer(user, channel, path: str, params: dict, pk: int | None = None):
    """The answer of the DRF view itself, without the middleware in front of it."""
    request = APIRequestFactory().get(path, params)
    force_authenticate(request, user=user)
    if pk is None:
        response = FailedIntegrationListView.as_view()(request, channel_id=channel.pk)
    else:
        response = FailedIntegrationDetailView.as_view()(request, channel_id=channel.pk, pk=pk)
    response.render()
    return response.status_code, json.loads(response.content)


FAST_STATEMENTS: list[str] = []


@pytest.fixture(autouse=True)
def _count_fast_statements(monkeypatch):
    """Counts the fast path's statements (its own cursor is not Django's, which logs queries)."""
    original = fastpath._fetchone

    def counted(sql, params):
        FAST_STATEMENTS.append(sql)
        return original(sql, params)

    monkeypatch.setattr(fastpath, "_fetchone", counted)


def fast_answer(client, path: str, params: dict):
    """The answer through the middleware, and the statements it took (Django's and the fast
    path's)."""
    FAST_STATEMENTS.clear()
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path, params)
    return response.status_code, response.json(), len(queries) + len(FAST_STATEMENTS)


def test_a_list_page_is_one_statement(api_client, staff_user, channel, records):
    path = f"/api/v1/channel/{channel.pk}/failed_integrations/"

    status, body, statements = fast_answer(api_client, path, {"limit": 2})

    assert (status, statements) == (200, 1)
    assert (status, body) == regular_answer(staff_user, channel, path, {"limit": 2})


def test_a_record_is_one_statement(api_client, staff_user, channel, records):
    record = records["c"]
    path = f"/api/v1/channel/{channel.pk}/failed_integrations/{record.pk}/"

    status, body, statements = fast_answer(api_client, path, {})

    assert (status, statements) == (200, 1)
    assert (status, body) == regular_answer(staff_user, channel, path, {}, pk=record.pk)


@pytest.mark.parametrize(("param", "value", "expected"), CASES)
def test_every_filter_answers_as_the_regular_view(
    api_client,
    staff_user,
    channel,
    records,
    param,
    value,
    expected,
):
    value = value(records) if callable(value) else value
    path = f"/api/v1/channel/{channel.pk}/failed_integrations/"
    params = {param: value, "limit": 3}
    fast_answer(api_client, path, params)  # content types are cached after their first use

    status, body, statements = fast_answer(api_client, path, params)

    assert (status, body) == regular_answer(staff_user, channel, path, params)
    # A filter without an SQL form leaves the list to the regular view.
    assert statements == 1 if FILTERS[param].fast else statements > 1
    assert body["count"] == len(expected)


@pytest.mark.parametrize(
    "params",
    [
        {"sort": "-expiration_date", "limit": 2, "page": 2},
        {"sort": "retry_count,-version_date"},
        {"sort": "expiration_date", "reason_type": "remote"},
        {"page": 3, "limit": 1, "is_active": "true"},
    ],
)
def test_sorts_and_pages_answer_as_the_regular_view(
    api_client,
    staff_user,
    channel,
    records,
    params,
):
    path = f"/api/v1/channel/{channel.pk}/failed_integrations/"

    status, body, _ = fast_answer(api_client, path, params)

    assert status == 200
    assert (status, body) == regular_answer(staff_user, channel, path, params)


@pytest.mark.parametrize("sort", ["pk", "-version_date", "expiration_date", "-expiration_date"])
def test_a_cursor_walk_answers_as_the_regular_view(api_client, staff_user, channel, records, sort):
    path = f"/api/v1/channel/{channel.pk}/failed_integrations/"
    params = {"cursor": "*", "limit": 1, "sort": sort}
    while True:
        status, body, statements = fast_answer(api_client, path, params)
        assert (status, statements) == (200, 1)
        assert (status, body) == regular_answer(staff_user, channel, path, params)
        if not body["next"]:
            break
        params = {**params, "cursor": body["next"].split("cursor=")[1].split("&")[0]}
