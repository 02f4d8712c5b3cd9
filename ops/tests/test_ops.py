"""What production teams watch: request ids, metrics that match what was done, readiness,
JSON logs, and the API docs page."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re

import pytest
from django.db import OperationalError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from integrations.choices import AttemptOutcome
from integrations.dispatch.worker import Worker, WorkerConfig
from integrations.models import FailedIntegration, RetryAttempt, WorkerHeartbeat
from ops import views
from ops.logs import JsonFormatter

pytestmark = pytest.mark.django_db


def list_url(channel) -> str:
    return f"/api/v1/channel/{channel.pk}/failed_integrations/"


def scrape(client, **headers) -> dict[tuple, float]:
    """Every sample of GET /metrics: {(name, sorted labels): value}."""
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# --- request ids ---------------------------------------------------------------------------


def test_every_answer_carries_a_request_id(api_client, channel, client):
    answers = [
        api_client.get(list_url(channel)),
        api_client.get("/api/v1/channel/999999/failed_integrations/"),
        api_client.post(list_url(channel), data="{", content_type="application/json"),
        client.get("/console/login/"),
        client.get("/healthz"),
        client.get("/no/such/route"),
    ]
    ids = [answer["X-Request-ID"] for answer in answers]
    assert [answer.status_code for answer in answers] == [200, 404, 400, 200, 200, 404]
    assert all(len(rid) == 32 for rid in ids)
    assert len(set(ids)) == len(ids)


def test_a_request_id_is_taken_from_a_trusted_proxy_only(client, settings):
    assert client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")["X-Request-ID"] != "abc-123"
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    assert client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")["X-Request-ID"] == "abc-123"
    # Not a plain id: replaced, never echoed.
    replaced = client.get("/healthz", HTTP_X_REQUEST_ID="a b\nInjected: 1")["X-Request-ID"]
    assert len(replaced) == 32 and "Injected" not in replaced


# --- metrics --------------------------------------------------------------------------------


def test_requests_are_counted_by_route_method_and_status(api_client, channel, other_channel):
    client = Client()
    before = scrape(client)

    for _ in range(3):
        api_client.get(list_url(channel))
    api_client.get(list_url(other_channel) + "?sort=bogus")
    api_client.get("/api/v1/channel/999999/failed_integrations/")
    after = scrape(client)

    def grew(**labels):
        name = "fi_http_requests_total"
        return value(after, name, **labels) - value(before, name, **labels)

    route = "failed-integration-list"
    assert grew(route=route, method="GET", status="200") == 3
    assert grew(route=route, method="GET", status="400") == 1
    assert grew(route=route, method="GET", status="404") == 1
    assert not any("999999" in str(key) for key in after)  # the route, never the raw path
    histogram = "fi_http_request_duration_seconds_count"
    assert (
        value(after, histogram, route=route, method="GET")
        - value(before, histogram, route=route, method="GET")
        == 5
    )


def test_a_record_read_and_changed_is_counted_under_its_route(api_client, channel, make_failed):
    """On PostgreSQL the fast path answers these: the route is the one it matched."""
    failed = make_failed()
    client = Client()
    before = scrape(client)

    assert api_client.get(f"{list_url(channel)}{failed.pk}/").status_code == 200
    patched = api_client.patch(f"{list_url(channel)}{failed.pk}/", {"log_id": 5}, format="json")
    assert patched.status_code == 200
    after = scrape(client)

    name, route = "fi_http_requests_total", "failed-integration-detail"
    for method in ("GET", "PATCH"):
        grew = value(after, name, route=route, method=method, status="200") - value(
            before, name, route=route, method=method, status="200"
        )
        assert grew == 1, method


def test_failures_by_state_and_reason_match_the_stats(api_client, channel, make_failed):
    for reason in ("remote", "remote", "mapping"):
        make_failed(reason_type=reason, max_retry_count=3)
    make_failed(reason_type="mapping", retry_count=3, max_retry_count=3)
    parked = make_failed(reason_type="remote", max_retry_count=3)
    FailedIntegration.objects.filter(pk=parked.pk).update(parked=True)
    make_failed(reason_type="remote", is_active=False)

    samples = scrape(Client())
    stats = api_client.get(
        list_url(channel) + "stats/", {"group_by": "state,reason_type", "is_active": "true"}
    ).json()

    exported = {
        (dict(labels)["state"], dict(labels)["reason_type"]): n
        for (name, labels), n in samples.items()
        if name == "fi_failures" and dict(labels)["channel"] == str(channel.pk)
    }
    assert exported == {(r["state"], r["reason_type"]): r["count"] for r in stats["results"]}
    assert exported == {
        ("pending", "remote"): 2,
        ("pending", "mapping"): 1,
        ("exhausted", "mapping"): 1,
        ("parked", "remote"): 1,
    }


def test_attempts_exhaustions_backlog_and_heartbeats(channel, make_failed, receiver):
    channel.retry_endpoint = receiver.url
    channel.save()
    receiver.status = 500
    records = [make_failed(object_id=n, retry_count=0, max_retry_count=1) for n in range(3)]
    FailedIntegration.objects.filter(pk__in=[r.pk for r in records]).update(
        next_retry_at="2020-01-01T00:00:00Z"
    )
    client = Client()
    before = scrape(client)
    assert value(before, "fi_due_backlog", channel=str(channel.pk)) == 3
    assert value(before, "fi_oldest_due_age_seconds", channel=str(channel.pk)) > 3600

    Worker(WorkerConfig(name="w-metrics", poll=0.01, timeout=5)).run(once=True)
    after = scrape(client)

    label = str(channel.pk)
    attempts = RetryAttempt.objects.filter(failed_integration__channel=channel)
    assert attempts.count() == 3
    assert set(attempts.values_list("outcome", flat=True)) == {AttemptOutcome.HTTP_ERROR}
    assert (
        value(after, "fi_retry_attempts_total", channel=label, outcome="http_error")
        - value(before, "fi_retry_attempts_total", channel=label, outcome="http_error")
        == 3
    )
    assert (
        value(after, "fi_retry_attempt_duration_seconds_count", channel=label)
        - value(before, "fi_retry_attempt_duration_seconds_count", channel=label)
        == 3
    )
    assert (
        value(after, "fi_exhaustions_total", channel=label)
        - value(before, "fi_exhaustions_total", channel=label)
        == 3
    )
    assert value(after, "fi_due_backlog", channel=label) == 0


def test_a_worker_that_stopped_heartbeating_is_seen(channel):
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        name="crashed", started_at=now, seen_at=now - dt.timedelta(minutes=10)
    )
    running = Worker(WorkerConfig(name="running", poll=0.01))
    running.beat()
    samples = scrape(Client())

    assert value(samples, "fi_worker_heartbeat_age_seconds", worker="crashed") >= 600
    assert value(samples, "fi_worker_heartbeat_age_seconds", worker="running") < 30
    assert value(samples, "fi_workers_alive") == 1

    running.run(once=True)  # nothing to do: it stops, cleanly
    samples = scrape(Client())
    assert ("fi_worker_heartbeat_age_seconds", (("worker", "running"),)) not in samples
    assert value(samples, "fi_workers_alive") == 0


def test_the_metrics_need_their_token_when_one_is_set(client, settings):
    settings.METRICS_TOKEN = "t" * 32
    refused = client.get("/metrics")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    assert refused.status_code == wrong.status_code == 401
    assert refused.json()["code"] == "not_authenticated"
    assert refused["WWW-Authenticate"].startswith("Bearer")
    assert scrape(client, HTTP_AUTHORIZATION=f"Bearer {'t' * 32}")


def test_production_serves_no_metrics_without_a_token(client, settings):
    settings.METRICS_TOKEN = ""
    settings.PRODUCTION = True
    answer = client.get("/metrics")
    assert answer.status_code == 403
    assert "METRICS_TOKEN" in answer.json()["detail"]


# --- readiness ------------------------------------------------------------------------------


def test_ready_when_the_database_answers_and_is_migrated(client):
    answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ready", "database": connection.vendor}


def test_not_ready_when_the_database_does_not_answer(client, monkeypatch):
    def broken(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", broken)
    answer = client.get("/readyz")

    assert answer.status_code == 503
    assert answer["Retry-After"]
    assert answer.json()["problems"][0]["check"] == "database"
    assert "connection refused" in answer.json()["problems"][0]["detail"]


def test_healthz_answers_503_when_the_database_does_not_answer(client, monkeypatch):
    assert client.get("/healthz").status_code == 200

    def broken(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", broken)
    answer = client.get("/healthz")

    assert answer.status_code == 503
    assert answer["Retry-After"]
    assert answer.json() == {"status": "unavailable", "database": "unreachable"}


@pytest.mark.postgres_only
def test_not_ready_while_a_migration_is_unapplied(client, monkeypatch):
    monkeypatch.setattr(views, "_migrated", False)
    executor = MigrationExecutor(connection)
    leaf = executor.loader.graph.leaf_nodes("integrations")[0]
    previous = executor.loader.graph.node_map[leaf].parents
    target = sorted(parent.key for parent in previous if parent.key[0] == "integrations")[0]
    with transaction.atomic():
        executor.migrate([target])
        answer = client.get("/readyz")
        transaction.set_rollback(True)

    assert answer.status_code == 503
    problem = answer.json()["problems"][0]
    assert problem["check"] == "migrations"
    assert f"{leaf[0]}.{leaf[1]}" in problem["detail"]
    assert views._migrated is False  # not cached as migrated


# --- logs -----------------------------------------------------------------------------------


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict] = []

    def emit(self, record):
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def json_lines():
    handler = Lines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler.lines
    root.setLevel(level)
    root.removeHandler(handler)


def test_the_access_log_is_one_json_object_a_request(api_client, channel, json_lines, staff_user):
    answer = api_client.get(list_url(channel))

    access = [line for line in json_lines if line["logger"] == "fi.access"]
    assert len(access) == 1
    line = access[0]
    assert line["request_id"] == answer["X-Request-ID"]
    assert line["route"] == "failed-integration-list"
    assert line["status"] == 200
    assert line["method"] == "GET"
    assert line["channel"] == channel.pk
    assert line["user"] == staff_user.get_username()
    assert line["level"] == "INFO" and line["duration_ms"] >= 0
    assert line["time"].endswith("+00:00")


def test_the_worker_s_lines_carry_the_attempt_s_key(channel, make_failed, receiver, json_lines):
    channel.retry_endpoint = receiver.url
    channel.save()
    record = make_failed(max_retry_count=3)
    FailedIntegration.objects.filter(pk=record.pk).update(next_retry_at="2020-01-01T00:00:00Z")

    Worker(WorkerConfig(name="w-logs", poll=0.01, timeout=5)).run(once=True)

    attempt = RetryAttempt.objects.get(failed_integration=record)
    lines = [line for line in json_lines if line.get("idempotency_key") == attempt.idempotency_key]
    assert lines, json_lines
    assert lines[0]["worker"] == "w-logs" and lines[0]["channel"] == channel.pk
    assert "success" in lines[0]["message"]


def test_an_unknown_log_format_is_refused():
    import subprocess
    import sys

    env = {**os.environ, "LOG_FORMAT": "xml"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    run = subprocess.run(
        [sys.executable, "-c", "import config.settings"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode != 0
    assert "LOG_FORMAT must be 'text' or 'json'" in run.stderr


def test_the_api_docs_page_is_served_from_the_service_s_own_files(client):
    page = client.get("/api/v1/docs/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "swagger-ui-bundle.js" in html and 'data-schema-url="/api/v1/openapi.json"' in html
    assert "//" not in html.replace("<!doctype", "")  # every file from the service: no CDN


def test_the_dashboard_and_the_alerts_name_only_metrics_the_service_exports(channel):
    from pathlib import Path

    deploy = Path(__file__).resolve().parents[2] / "deploy"
    response = Client().get("/metrics")
    exported = {family.name for family in text_string_to_metric_families(response.content.decode())}
    texts = [
        (deploy / "grafana" / "failed-integrations.json").read_text(),
        (deploy / "prometheus" / "alerts.yml").read_text(),
    ]
    named = {name for text in texts for name in re.findall(r"\b(fi_[a-z_]+)", text)}
    bare = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in named}
    assert len(bare) >= 9
    assert bare <= exported, bare - exported


def test_an_open_circuit_and_a_pause_show_in_the_metrics(channel, other_channel):
    from integrations.dispatch import protection
    from integrations.models import ChannelDispatch

    now = timezone.now()
    ChannelDispatch.objects.create(
        channel=channel, circuit="open", circuit_since=now, outage_since=now - dt.timedelta(hours=1)
    )
    protection.pause(other_channel, by="operator")

    samples = scrape(Client())

    one, other = str(channel.pk), str(other_channel.pk)
    assert value(samples, "fi_channel_circuit_open_seconds", channel=one) >= 3600
    assert value(samples, "fi_channel_circuit_open_seconds", channel=other) == 0
    assert value(samples, "fi_channel_dispatch_held", channel=one, reason="circuit") == 1
    assert value(samples, "fi_channel_dispatch_held", channel=one, reason="paused") == 0
    assert value(samples, "fi_channel_dispatch_held", channel=other, reason="paused") == 1


def test_a_learned_rate_shows_in_the_metrics(channel, other_channel):
    from integrations.models import ChannelDispatch

    ChannelDispatch.objects.create(channel=channel, learned_rate=42.5, learned_at=timezone.now())

    samples = scrape(Client())

    assert value(samples, "fi_channel_learned_rate", channel=str(channel.pk)) == 42.5
    assert value(samples, "fi_channel_learned_rate", channel=str(other_channel.pk)) == 0
