"""The read fast path (PostgreSQL) answers exactly what the regular views answer, in one
statement."""

from __future__ import annotations

import datetime as dt
import json

import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIRequestFactory, force_authenticate

from integrations.api.views import FailedIntegrationDetailView, FailedIntegrationListView
from integrations.models import ChannelGrant, FailedIntegration, IntegrationAction
from integrations.reads import fastpath
from integrations.reads.query import FILTERS
from integrations.tests.reads.test_filtersets import CASES

pytestmark = [pytest.mark.django_db, pytest.mark.postgres_only]


class QuerysetListView(FailedIntegrationListView):
    """The list view answering from its queryset, the reference the statement is held to."""

    page_statement = False


class QuerysetDetailView(FailedIntegrationDetailView):
    """The record's view answering from its queryset, the reference the statement is held
    to."""

    record_statement = False


def regular_answer(user, channel, path: str, params: dict, pk: int | None = None):
    """The answer of the DRF view itself from its queryset, without the middleware in front of
    it."""
    request = APIRequestFactory().get(path, params)
    force_authenticate(request, user=user)
    if pk is None:
        response = QuerysetListView.as_view()(request, channel_id=channel.pk)
    else:
        response = QuerysetDetailView.as_view()(request, channel_id=channel.pk, pk=pk)
    response.render()
    return response.status_code, json.loads(response.content)


FAST_STATEMENTS: list[str] = []


@pytest.fixture(autouse=True)
def _count_fast_statements(monkeypatch):
    """Counts the fast path's statements (its own cursor is not Django's, which logs queries)."""
    original = fastpath.fetchone_prepared

    def counted(sql, params):
        FAST_STATEMENTS.append(sql)
        return original(sql, params)

    monkeypatch.setattr(fastpath, "fetchone_prepared", counted)


def answer_statements(queries) -> int:
    """Django's statements of an answer, but the token's bookkeeping after the answer
    (accounts/usage.py): its last use, written at most once a minute, and its user's name for
    the access log, read once per process."""
    return sum(
        'UPDATE "accounts_token"' not in query["sql"]
        and not query["sql"].startswith('SELECT "auth_user"."username" AS "user__username"')
        for query in queries
    )


def fast_answer(client, path: str, params: dict):
    """The answer through the middleware, and the statements it took (Django's and the fast
    path's)."""
    FAST_STATEMENTS.clear()
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path, params)
    return response.status_code, response.json(), answer_statements(queries) + len(FAST_STATEMENTS)


def test_a_list_page_is_one_statement(api_client, staff_user, channel, records):
    path = f"/api/v1/channel/{channel.pk}/failed_integrations/"

    status, body, statements = fast_answer(api_client, path, {"limit": 2})

    assert (status, statements) == (200, 1)
    assert (status, body) == regular_answer(staff_user, channel, path, {"limit": 2})


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 2},
        {"sort": "-retry_count", "reason_type": "remote", "limit": 2},
        {"page": 2, "limit": 1},
    ],
)
def test_the_regular_view_finds_a_page_by_the_same_statement(staff_user, channel, records, params):
    """A front door other than the token's (a session, the console) gets the statement's
    page, and its plan, too."""
    path = f"/api/v1/channel/{channel.pk}/failed_integrations/"
    request = APIRequestFactory().get(path, params)
    force_authenticate(request, user=staff_user)
    FAST_STATEMENTS.clear()

    response = FailedIntegrationListView.as_view()(request, channel_id=channel.pk)

    assert len(FAST_STATEMENTS) == 1 and "WITH allowed AS" in FAST_STATEMENTS[0]
    answer = response.status_code, json.loads(response.content)
    assert answer == regular_answer(staff_user, channel, path, params)


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_the_regular_view_finds_a_record_by_the_same_statement(user, channel, records, role):
    ChannelGrant.objects.create(user=user, channel=channel, role=role)
    record = records["c"]
    FailedIntegration.objects.filter(pk=record.pk).update(last_error="HTTP 502: gone")
    path = f"/api/v1/channel/{channel.pk}/failed_integrations/{record.pk}/"
    request = APIRequestFactory().get(path)
    force_authenticate(request, user=user)
    FAST_STATEMENTS.clear()

    response = FailedIntegrationDetailView.as_view()(request, channel_id=channel.pk, pk=record.pk)

    assert len(FAST_STATEMENTS) == 1 and "WITH allowed AS" in FAST_STATEMENTS[0]
    answer = response.status_code, json.loads(response.content)
    assert answer == regular_answer(user, channel, path, {}, pk=record.pk)
    assert answer[1]["last_error"] == ("" if role == "viewer" else "HTTP 502: gone")


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


@pytest.fixture
def correlated(channel, make_failed):
    """40 records whose dates, counts and kinds follow their ids, as real failures' do: a
    filter on one picks records from one end of another's sort order."""
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return [
        make_failed(
            object_id=n,
            reason_type=("remote", "mapping")[n % 7 == 0],
            is_active=n % 5 != 0,
            version_date=base + dt.timedelta(days=n),
            expiration_date=None if n % 3 == 0 else base + dt.timedelta(days=80 - n),
            retry_count=n // 10,
            max_retry_count=2,
        )
        for n in range(40)
    ]


@pytest.mark.parametrize("walk_rows", [0, 1, 5, 20, 39, 1000])
@pytest.mark.parametrize(
    "params",
    [
        {"version_date__gte": "2026-02-01T00:00:00Z", "sort": "pk"},
        {"version_date__lt": "2026-01-20T00:00:00Z", "sort": "-retry_count", "limit": 4},
        {"reason_type": "mapping", "sort": "-pk", "limit": 2, "page": 2},
        {"is_active": "true", "sort": "expiration_date", "limit": 5},
        {"retry_count__gte": "2", "sort": "-expiration_date,version_date", "limit": 3},
        {"exhausted": "true", "sort": "-version_date", "limit": 3, "page": 3},
        {"created_date__gte": "2000-01-01T00:00:00Z", "sort": "-modified_date", "limit": 7},
        {"version_date__gte": "2027-01-01T00:00:00Z", "sort": "retry_count"},
    ],
)
def test_a_filtered_page_answers_as_the_regular_view_however_it_is_found(
    api_client, staff_user, channel, correlated, monkeypatch, params, walk_rows
):
    """The page is the same whether it is found by walking the sort's index (all of it, part
    of it, none of it) or by reading the matches and sorting them."""
    monkeypatch.setattr(fastpath, "WALK_ROWS", walk_rows)
    path = f"/api/v1/channel/{channel.pk}/failed_integrations/"

    status, body, statements = fast_answer(api_client, path, params)

    assert (status, statements) == (200, 1)
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


# --- reports of one failure ------------------------------------------------------------------

VOLATILE = {"pk", "created_date", "modified_date", "next_retry_at", "resolved_at"}


def report(**fields) -> dict:
    return {
        "version_date": "2026-06-27T08:38:26Z",
        "reason_type": "remote",
        "object_id": 7001,
        "max_retry_count": 3,
        "retry_interval": 600,
        **fields,
    }


def fast_create(client, channel, payload):
    """A POST through the middleware; answers (status, body, statements)."""
    FAST_STATEMENTS.clear()
    with CaptureQueriesContext(connection) as queries:
        response = client.post(
            f"/api/v1/channel/{channel.pk}/failed_integrations/", payload, format="json"
        )
    return response.status_code, response.json(), answer_statements(queries) + len(FAST_STATEMENTS)


def regular_create(user, channel, payload):
    request = APIRequestFactory().post(
        f"/api/v1/channel/{channel.pk}/failed_integrations/", payload, format="json"
    )
    force_authenticate(request, user=user)
    response = FailedIntegrationListView.as_view()(request, channel_id=channel.pk)
    response.render()
    return response.status_code, json.loads(response.content)


def stored(pk: int) -> dict:
    row = FailedIntegration.objects.filter(pk=pk).values().get()
    return {k: v for k, v in row.items() if k not in {"id", *VOLATILE}}


def test_a_report_is_one_statement_and_the_supersede_check(
    api_client, staff_user, channel, product_type
):
    # The channel's retry policies and the content types are cached by the first report.
    fast_create(api_client, channel, report(content_type=product_type.pk, object_id=1))
    payload = report(content_type=product_type.pk)

    status, body, statements = fast_create(api_client, channel, payload)

    assert (status, statements) == (201, 2)
    # The answer is the record as stored, as the regular view answers it.
    path = f"/api/v1/channel/{channel.pk}/failed_integrations/{body['pk']}/"
    assert (200, body) == regular_answer(staff_user, channel, path, {}, pk=body["pk"])
    assert body["next_retry_at"] > body["created_date"]


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"reason_type": "mapping", "retry_interval": 0, "log_id": 41, "channel": None},
        {"reason_type": "channel_app", "expiration_date": "2030-01-01T03:00:00+03:00"},
        {"retry_count": 5, "max_retry_count": 5, "is_active": False},
        {"with_action": True},
    ],
    ids=["defaults", "mapping", "expiring", "exhausted-inactive", "with-action"],
)
def test_a_report_is_stored_and_answered_as_the_regular_view_does(
    api_client, staff_user, channel, product_type, integration_action, fields
):
    fields = dict(fields)
    if fields.pop("with_action", False):
        fields["integration_action"] = integration_action.pk
    if "channel" in fields:
        fields["channel"] = channel.pk
    channel.retry_endpoint = "http://127.0.0.1:9/"
    channel.save()

    fast_status, fast_body, _ = fast_create(
        api_client, channel, report(content_type=product_type.pk, **fields)
    )
    assert any("INSERT INTO" in sql for sql in FAST_STATEMENTS)  # the fast path wrote it
    regular_status, regular_body = regular_create(
        staff_user, channel, report(content_type=product_type.pk, object_id=7002, **fields)
    )

    assert fast_status == regular_status == 201
    regular_body["object_id"] = 7001
    same = {k: v for k, v in regular_body.items() if k not in VOLATILE}
    assert {k: v for k, v in fast_body.items() if k not in VOLATILE} == same
    assert stored(fast_body["pk"]) == {**stored(regular_body["pk"]), "object_id": 7001}


def test_a_newer_report_supersedes_and_an_older_one_is_superseded_on_arrival(
    api_client, channel, product_type
):
    first = fast_create(api_client, channel, report(content_type=product_type.pk))[1]
    newer = fast_create(
        api_client,
        channel,
        report(content_type=product_type.pk, version_date="2026-07-01T00:00:00Z"),
    )[1]
    older = fast_create(
        api_client,
        channel,
        report(content_type=product_type.pk, version_date="2026-01-01T00:00:00Z"),
    )[1]

    assert (newer["is_active"], newer["state"]) == (True, "pending")
    assert (older["is_active"], older["state"]) == (False, "superseded")
    assert FailedIntegration.objects.get(pk=first["pk"]).resolution == "superseded"
    assert FailedIntegration.objects.filter(channel=channel, is_active=True).count() == 1


def test_a_report_the_regular_view_refuses_is_refused_and_nothing_is_written(
    api_client, channel, other_channel, product_type, staff_user
):
    foreign_action = IntegrationAction.objects.create(
        channel=other_channel, content_type=product_type, object_id=1
    )
    cases = [
        (report(content_type=product_type.pk, integration_action=foreign_action.pk), 400),
        (report(content_type=999_999), 400),
        (report(content_type=product_type.pk, reason_type="nope"), 400),
        (report(content_type=product_type.pk, channel=other_channel.pk), 400),
        ([report(content_type=product_type.pk)], 400),
    ]
    for payload, expected in cases:
        status, body, _ = fast_create(api_client, channel, payload)
        assert (status, body) == (expected, regular_create(staff_user, channel, payload)[1])
    assert not FailedIntegration.objects.exists()


def test_a_report_needs_a_read_write_grant(client, user, channel, product_type):
    from accounts.services import token_create

    _, key = token_create(user=user, name="app")
    grant = ChannelGrant.objects.create(user=user, channel=channel, role="viewer")
    path = f"/api/v1/channel/{channel.pk}/failed_integrations/"
    headers = {"HTTP_AUTHORIZATION": f"Token {key}"}
    payload = json.dumps(report(content_type=product_type.pk))

    refused = client.post(path, payload, content_type="application/json", **headers)
    grant.role = "operator"
    grant.save()
    accepted = client.post(path, payload, content_type="application/json", **headers)

    assert refused.status_code == 403
    assert refused.json()["code"] == "permission_denied"
    assert accepted.status_code == 201
    assert FailedIntegration.objects.count() == 1


def test_a_report_in_another_media_type_is_left_to_the_regular_view(
    client, token_key, channel, product_type
):
    response = client.post(
        f"/api/v1/channel/{channel.pk}/failed_integrations/",
        "version_date=2026-06-27T08:38:26Z",
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=f"Token {token_key}",
    )

    assert response.status_code == 415
    assert not FailedIntegration.objects.exists()


# --- updates ---------------------------------------------------------------------------------


def fast_write(client, method: str, path: str, payload, **headers):
    FAST_STATEMENTS.clear()
    response = getattr(client, method)(path, payload, format="json", **headers)
    return response


def regular_write(user, channel, method: str, pk: int, payload, **headers):
    request = getattr(APIRequestFactory(), method)(
        f"/api/v1/channel/{channel.pk}/failed_integrations/{pk}/", payload, format="json", **headers
    )
    force_authenticate(request, user=user)
    response = FailedIntegrationDetailView.as_view()(request, channel_id=channel.pk, pk=pk)
    response.render()
    return response


def detail(channel, pk: int) -> str:
    return f"/api/v1/channel/{channel.pk}/failed_integrations/{pk}/"


@pytest.mark.parametrize(
    ("method", "payload"),
    [
        ("patch", {"retry_count": 2}),
        ("patch", {"version_date": "2026-08-01T00:00:00+02:00", "log_id": 9}),
        ("patch", {"is_active": False}),
        ("patch", {"reason_type": "mapping", "retry_interval": 0}),
        ("patch", {"integration_action": "ACTION"}),
        ("put", report(content_type="PRODUCT", object_id=1, retry_count=1, max_retry_count=4)),
    ],
)
def test_an_update_is_stored_and_answered_as_the_regular_view_does(
    api_client, staff_user, channel, make_failed, product_type, integration_action, method, payload
):
    payload = {
        k: {"ACTION": integration_action.pk, "PRODUCT": product_type.pk}.get(v, v)
        if isinstance(v, str)
        else v
        for k, v in payload.items()
    }
    fast_record = make_failed(object_id=1, max_retry_count=3, retry_interval=60)
    regular_record = make_failed(object_id=2, max_retry_count=3, retry_interval=60)

    fast = fast_write(api_client, method, detail(channel, fast_record.pk), payload)
    assert any("updated AS (UPDATE" in sql for sql in FAST_STATEMENTS)  # the fast path wrote it
    if "object_id" in payload:  # each record stays a failure of its own object
        payload["object_id"] = regular_record.object_id
    regular = regular_write(staff_user, channel, method, regular_record.pk, payload)

    assert fast.status_code == regular.status_code == 200
    fast_body, regular_body = fast.json(), json.loads(regular.content)
    assert fast_body["object_id"] == 1
    regular_body["object_id"] = fast_body["object_id"]
    assert {k: v for k, v in fast_body.items() if k not in VOLATILE} == {
        k: v for k, v in regular_body.items() if k not in VOLATILE
    }
    assert stored(fast_record.pk) == {**stored(regular_record.pk), "object_id": 1}
    path = detail(channel, fast_record.pk)
    assert regular_answer(staff_user, channel, path, {}, pk=fast_record.pk) == (200, fast_body)
    assert fast["ETag"] == f'"{fast_record.pk}-{fast_body["modified_date"]}"'


def test_an_update_the_regular_view_refuses_is_refused_and_nothing_changes(
    api_client, staff_user, channel, other_channel, make_failed, product_type
):
    record = make_failed(object_id=1)
    before = stored(record.pk)
    foreign_action = IntegrationAction.objects.create(
        channel=other_channel, content_type=product_type, object_id=1
    )
    cases = [
        ("patch", {"retry_count": -1}),
        ("patch", {"integration_action": foreign_action.pk}),
        ("patch", {"channel": other_channel.pk}),
        ("patch", ["not", "an", "object"]),
        ("put", {"retry_count": 1}),
    ]
    for method, payload in cases:
        fast = fast_write(api_client, method, detail(channel, record.pk), payload)
        regular = regular_write(staff_user, channel, method, record.pk, payload)
        assert (fast.status_code, fast.json()) == (400, json.loads(regular.content))
    assert stored(record.pk) == before


def test_a_conditional_update_is_left_to_the_regular_view(api_client, channel, make_failed):
    record = make_failed(object_id=1)
    path = detail(channel, record.pk)
    current = api_client.get(path)["ETag"]
    api_client.patch(path, {"retry_count": 2}, format="json")

    stale = api_client.patch(path, {"retry_count": 3}, format="json", HTTP_IF_MATCH=current)
    fresh_tag = api_client.get(path)["ETag"]
    fresh = api_client.patch(path, {"retry_count": 4}, format="json", HTTP_IF_MATCH=fresh_tag)

    assert stale.status_code == 412
    assert fresh.status_code == 200
    assert FailedIntegration.objects.get(pk=record.pk).retry_count == 4


def test_an_update_needs_a_read_write_grant(client, user, channel, make_failed):
    from accounts.services import token_create

    record = make_failed(object_id=1)
    _, key = token_create(user=user, name="app")
    ChannelGrant.objects.create(user=user, channel=channel, role="viewer")

    response = client.patch(
        detail(channel, record.pk),
        json.dumps({"retry_count": 3}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {key}",
    )

    assert response.status_code == 403
    assert FailedIntegration.objects.get(pk=record.pk).retry_count == 1


def test_the_service_connection_does_not_jit_compile():
    """A list statement's estimated cost can pass jit_above_cost; compiling it took 100 ms."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"


@pytest.mark.django_db(transaction=True)
def test_a_report_whose_connection_is_lost_after_its_insert_answers_503_and_is_stored_once(
    api_client, channel, product_type, monkeypatch
):
    """The INSERT was committed, but the connection broke before its row came back: the
    regular view must not insert it again. 503 with Retry-After; the client retries."""
    counted = fastpath.fetchone_prepared

    def lost_after_the_insert(sql, params):
        row = counted(sql, params)
        if "INSERT INTO" in sql:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return row

    monkeypatch.setattr(fastpath, "fetchone_prepared", lost_after_the_insert)

    response = api_client.post(
        f"/api/v1/channel/{channel.pk}/failed_integrations/",
        report(content_type=product_type.pk),
        format="json",
    )

    assert response.status_code == 503
    assert response.json()["code"] == "database_unavailable"
    assert int(response["Retry-After"]) > 0
    assert FailedIntegration.objects.filter(channel=channel).count() == 1
