"""What deploy/ ships works as shipped: the API and a retry worker started from the example
environment, the way the systemd units start them (on PostgreSQL), answer /readyz and report
the worker alive in the metrics."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
INSTALLED = "/opt/failed-integrations"

pytestmark = [pytest.mark.django_db, pytest.mark.postgres_only]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def example_environment() -> dict[str, str]:
    values = {}
    for line in (DEPLOY / "failed-integrations.env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def unit(name: str) -> dict[str, list[str]]:
    """A unit's [Service] settings (each may be given several times)."""
    settings: dict[str, list[str]] = {}
    for line in (DEPLOY / "systemd" / name).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def command(settings: dict[str, list[str]], **specifiers: str) -> list[str]:
    text = settings["ExecStart"][0].replace(INSTALLED, str(ROOT))
    for specifier, value in specifiers.items():
        text = text.replace(f"%{specifier}", value)
    return shlex.split(text)


def test_the_example_environment_names_every_setting():
    """Each environment variable the settings read is in the example (set, or commented out
    with its default)."""
    settings_source = (ROOT / "config" / "settings.py").read_text()
    read = set(re.findall(r'env_\w+\(\s*"([A-Z_]+)"', settings_source))
    read |= set(re.findall(r'os\.environ\.get\(\s*"([A-Z_]+)"', settings_source))
    example = (DEPLOY / "failed-integrations.env.example").read_text()
    named = set(re.findall(r"^#? ?([A-Z_]+)=", example, flags=re.MULTILINE))
    assert read, "no setting found in config/settings.py"
    assert read - {"DJANGO_SETTINGS_MODULE", "SQLITE_PATH"} <= named, read - named


def deployed_environment(tmp_path) -> dict[str, str]:
    """The example environment, on the test database, with its directories in `tmp_path`."""
    database = connection.settings_dict
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        **example_environment(),
        "DATABASE_URL": (
            f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/"
            f"{database['NAME']}"
        ),
        "DATA_DIR": str(tmp_path / "state"),  # the units' StateDirectory
    }


def wait_ready(base: str, host: dict, process) -> httpx.Response | None:
    deadline = time.monotonic() + 60
    ready = None
    while time.monotonic() < deadline and process.poll() is None:
        try:
            ready = httpx.get(f"{base}/readyz", headers=host, timeout=2)
            if ready.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return ready


def test_plain_gunicorn_with_the_shipped_configuration_serves(tmp_path):
    environment = deployed_environment(tmp_path)
    port = free_port()
    environment.update(BIND=f"127.0.0.1:{port}", PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "m"))
    host = {"Host": environment["ALLOWED_HOSTS"].split(",")[0]}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "deploy/gunicorn.conf.py",
            "config.wsgi:application",
        ],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ready = wait_ready(f"http://127.0.0.1:{port}", host, server)
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=60)[0]

    assert ready is not None and ready.status_code == 200, output
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]  # LOG_FORMAT=json
    assert any("Booting worker" in line["message"] for line in lines)
    assert server.returncode == 0


def test_the_api_and_a_worker_start_as_the_units_start_them(tmp_path):
    environment = deployed_environment(tmp_path)
    api_port, worker_port = free_port(), free_port()
    environment["BIND"] = f"127.0.0.1:{api_port}"
    api_unit = unit("failed-integrations.service")
    for line in api_unit["Environment"]:
        name, _, value = line.partition("=")
        environment[name] = (
            str(tmp_path / "metrics") if name == "PROMETHEUS_MULTIPROC_DIR" else value
        )
    (tmp_path / "metrics").mkdir()

    migrate = subprocess.run(
        command(unit("failed-integrations-migrate.service")),
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr

    worker_command = command(unit("failed-integrations-worker@.service"), i="01", H="host")
    worker_command[worker_command.index("--metrics-bind") + 1] = f"127.0.0.1:{worker_port}"
    worker_environment = {k: v for k, v in environment.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    processes = [
        subprocess.Popen(command(api_unit), cwd=ROOT, env=environment),
        subprocess.Popen(worker_command, cwd=ROOT, env=worker_environment),
    ]
    try:
        host = {"Host": environment["ALLOWED_HOSTS"].split(",")[0]}
        base = f"http://127.0.0.1:{api_port}"
        deadline = time.monotonic() + 60
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"{base}/readyz", headers=host, timeout=2)
                metrics = httpx.get(
                    f"{base}/metrics",
                    headers={**host, "Authorization": f"Bearer {environment['METRICS_TOKEN']}"},
                    timeout=10,
                )
                alive = {
                    sample.name: sample.value
                    for family in text_string_to_metric_families(metrics.text)
                    for sample in family.samples
                }.get("fi_workers_alive")
                if ready.status_code == 200 and alive == 1:
                    break
            except httpx.HTTPError:
                pass
            assert all(process.poll() is None for process in processes)
            time.sleep(0.5)
        worker_metrics = httpx.get(f"http://127.0.0.1:{worker_port}/metrics", timeout=5)

        assert ready is not None and ready.status_code == 200, ready and ready.text
        assert ready.json() == {"status": "ready", "database": "postgresql"}
        assert alive == 1
        assert httpx.get(f"{base}/metrics", headers=host).status_code == 401
        assert "# HELP fi_retry_attempts_total" in worker_metrics.text
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=60) for process in processes]
    assert codes == [0, 0]
