"""A real Prometheus (Debian's `prometheus` package) scrapes the running service, and the values
read back through its HTTP query API are what was done; the alert rules shipped in
deploy/prometheus pass `promtool check rules` and their unit tests (`promtool test rules`).

Without the binaries these tests are skipped, saying so; under CI=true (where scripts/test
installs them) they are required."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from django.test import Client

from integrations.dispatch.worker import Worker, WorkerConfig
from integrations.models import FailedIntegration

from .test_ops import list_url, scrape, value

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
TOKEN = "m" * 40


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        message = (
            f"Prometheus tests: no {name} (apt install prometheus; scripts/test does under CI=true)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}, and CI=true requires them.")
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_alert_rules_and_the_scrape_configuration_pass_promtool(tmp_path):
    promtool = tool("promtool")
    # The shipped configuration, with its token file and rules where promtool can read them.
    token = tmp_path / "token"
    token.write_text(TOKEN)
    configuration = (
        (RULES / "prometheus.yml")
        .read_text()
        .replace("/etc/prometheus/failed-integrations-metrics-token", str(token))
    )
    (tmp_path / "prometheus.yml").write_text(configuration)
    shutil.copy(RULES / "alerts.yml", tmp_path / "alerts.yml")
    configured = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert configured.returncode == 0, configured.stdout + configured.stderr
    checked = subprocess.run(
        [promtool, "check", "rules", "alerts.yml"], cwd=RULES, capture_output=True, text=True
    )
    tested = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"], cwd=RULES, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout
    assert tested.returncode == 0, tested.stdout + tested.stderr


@pytest.fixture
def prometheus(live_server, tmp_path, settings):
    """Prometheus scraping the live server's /metrics every second, with the metrics token."""
    binary = tool("prometheus")
    settings.METRICS_TOKEN = TOKEN
    host_port = live_server.url.removeprefix("http://")
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: failed-integrations
    metrics_path: /metrics
    authorization:
      credentials: {TOKEN}
    static_configs:
      - targets: ["{host_port}"]
"""
    )
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            pytest.fail(f"prometheus exited: {process.stderr.read()}")
        time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("prometheus did not get ready within 30 s")
    yield url
    process.terminate()
    process.wait(timeout=30)


def query(prometheus: str, expression: str) -> float | None:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expression}).json()
    assert answer["status"] == "success", answer
    results = answer["data"]["result"]
    return float(results[0]["value"][1]) if results else None


def settle(prometheus: str, expected: dict[str, float], timeout: float = 30.0) -> dict:
    """Polls until every expression has its expected value (Prometheus has scraped after the
    sequence), or answers what it had at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        found = {expression: query(prometheus, expression) for expression in expected}
        if found == expected or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


@pytest.mark.django_db(transaction=True)
def test_a_real_prometheus_scrapes_what_was_done(
    prometheus, live_server, api_client, channel, make_failed, receiver, token_key
):
    channel.retry_endpoint = receiver.url
    channel.save()
    receiver.status = 500
    local = Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    before = scrape(local, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    label = str(channel.pk)

    # A known sequence: 4 lists, 2 refused sorts, 3 records of which 2 exhaust on their one
    # attempt (the channel app answers 500) and 1 is parked.
    headers = {"Authorization": f"Token {token_key}"}
    base = f"{live_server.url}{list_url(channel)}"
    for _ in range(4):
        assert httpx.get(base, headers=headers).status_code == 200
    for _ in range(2):
        assert httpx.get(base, headers=headers, params={"sort": "bogus"}).status_code == 400
    due = [make_failed(object_id=n, retry_count=0, max_retry_count=1) for n in (1, 2)]
    FailedIntegration.objects.filter(pk__in=[r.pk for r in due]).update(
        next_retry_at="2020-01-01T00:00:00Z"
    )
    parked = make_failed(object_id=3, max_retry_count=5)
    FailedIntegration.objects.filter(pk=parked.pk).update(parked=True)
    Worker(WorkerConfig(name="w-prometheus", poll=0.01, timeout=5)).run(once=True)

    def grown(name: str, **labels) -> float:
        return value(before, name, **labels)

    route = 'route="failed-integration-list",method="GET"'
    expected = {
        f'fi_http_requests_total{{{route},status="200"}}': grown(
            "fi_http_requests_total", route="failed-integration-list", method="GET", status="200"
        )
        + 4,
        f'fi_http_requests_total{{{route},status="400"}}': grown(
            "fi_http_requests_total", route="failed-integration-list", method="GET", status="400"
        )
        + 2,
        f'fi_retry_attempts_total{{channel="{label}",outcome="http_error"}}': grown(
            "fi_retry_attempts_total", channel=label, outcome="http_error"
        )
        + 2,
        f'fi_exhaustions_total{{channel="{label}"}}': grown("fi_exhaustions_total", channel=label)
        + 2,
        f'fi_failures{{channel="{label}",state="exhausted",reason_type="remote"}}': 2.0,
        f'fi_failures{{channel="{label}",state="parked",reason_type="remote"}}': 1.0,
        f'fi_due_backlog{{channel="{label}"}}': 0.0,
        'up{job="failed-integrations"}': 1.0,
    }

    assert settle(prometheus, expected) == expected
