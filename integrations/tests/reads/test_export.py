"""Export streams every matching record, as the list answers it, in CSV or NDJSON."""

from __future__ import annotations

import csv
import io

import orjson
import pytest

from integrations.models import ChannelGrant, FailedIntegration
from integrations.records.registry import ANSWERED

pytestmark = pytest.mark.django_db


def export_url(channel, query=""):
    return f"/api/v1/channel/{channel.pk}/failed_integrations/export/{query}"


def body_of(response) -> bytes:
    return b"".join(response.streaming_content)


def test_ndjson_is_the_list_s_answer_line_by_line(api_client, channel, records):
    query = "?reason_type__in=remote,channel_app&sort=-version_date"

    exported = api_client.get(export_url(channel, query + "&format=ndjson"))
    listed = api_client.get(f"/api/v1/channel/{channel.pk}/failed_integrations/{query}").json()

    assert exported["Content-Type"] == "application/x-ndjson"
    assert "attachment" in exported["Content-Disposition"]
    lines = [orjson.loads(line) for line in body_of(exported).splitlines()]
    assert lines == listed["results"]
    assert [row["pk"] for row in lines] == [records[k].pk for k in ("d", "c", "b")]


def test_csv_has_a_column_per_field_and_a_row_per_record(api_client, channel, records):
    exported = api_client.get(export_url(channel, "?is_active=true"))

    rows = list(csv.DictReader(io.StringIO(body_of(exported).decode())))
    assert exported["Content-Type"].startswith("text/csv")
    assert list(rows[0]) == [field.name for field in ANSWERED]
    assert [int(row["pk"]) for row in rows] == [records[k].pk for k in ("a", "b", "d")]


def test_every_record_is_streamed_past_one_chunk(api_client, channel, make_failed):
    first = make_failed()
    FailedIntegration.objects.bulk_create(
        FailedIntegration(
            channel=channel,
            content_type_id=first.content_type_id,
            object_id=n,
            reason_type="remote",
            version_date="2025-01-01T00:00:00Z",
        )
        for n in range(4500)
    )

    exported = api_client.get(export_url(channel, "?format=ndjson"))

    pks = [orjson.loads(line)["pk"] for line in body_of(exported).splitlines()]
    assert len(pks) == 4501 and pks == sorted(pks)


@pytest.mark.parametrize(
    ("query", "named"), [("?format=xml", "format"), ("?is_active=x", "is_active")]
)
def test_fail_a_bad_format_or_filter_answers_400(api_client, channel, records, query, named):
    response = api_client.get(export_url(channel, query))

    assert response.status_code == 400 and named in response.json()


def test_a_viewer_s_export_shows_no_error_text(anonymous_client, user, channel, make_failed):
    from accounts.services import token_create

    make_failed(last_error="HTTP 500: db_password=hunter2")
    ChannelGrant.objects.create(user=user, channel=channel, role="viewer")
    anonymous_client.credentials(HTTP_AUTHORIZATION=f"Token {token_create(user=user)[1]}")

    exported = body_of(anonymous_client.get(export_url(channel, "?format=ndjson")))

    assert b"hunter2" not in exported


@pytest.mark.postgres_only
@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
@pytest.mark.parametrize("query", ["", "?is_active=true&sort=-version_date", "?state=expired"])
def test_postgresql_writes_what_python_writes(
    api_client, channel, records, monkeypatch, fmt, query
):
    """The SQL path (PostgreSQL writes the rows) answers exactly the Python path's records."""
    from integrations.reads import export

    url = export_url(channel, f"{query}{'&' if query else '?'}format={fmt}")
    by_postgresql = body_of(api_client.get(url))
    monkeypatch.setattr(export, "is_postgresql", lambda: False)
    by_python = body_of(api_client.get(url))

    def parsed(body: bytes):
        if fmt == "csv":
            return list(csv.DictReader(io.StringIO(body.decode())))
        return [orjson.loads(line) for line in body.splitlines()]

    assert parsed(by_postgresql) == parsed(by_python)
    assert parsed(by_python)
