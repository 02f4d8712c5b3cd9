"""`manage.py serve --demo`, the README's first command, on a fresh SQLite file."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def newcomer_environment(tmp_path, **more: str) -> dict[str, str]:
    """This machine's environment as a newcomer's shell has it: no database URL, no settings
    module, data in `tmp_path`."""
    env = {
        k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}
    }
    return {**env, "DATA_DIR": str(tmp_path), **more}


def serve(tmp_path, port: int, *options: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "serve", *options, "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=newcomer_environment(tmp_path, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_listening(server: subprocess.Popen) -> str:
    output = ""
    deadline = time.monotonic() + 60
    while "Listening at" not in output and time.monotonic() < deadline:
        line = server.stdout.readline()
        if not line:
            break
        output += line
    assert "Listening at" in output, output
    return output


def test_serve_migrates_prints_a_token_and_answers(tmp_path):
    port = free_port()
    server = serve(tmp_path, port, "--demo")
    try:
        output = wait_listening(server)
        key = re.search(r"Token: ([0-9a-f]{40})", output).group(1)
        channel = re.search(r"Demo channel (\d+)", output).group(1)
        base = f"http://127.0.0.1:{port}/api/v1/channel/{channel}/failed_integrations/"
        headers = {"Authorization": f"Token {key}"}

        created = httpx.post(
            base,
            headers=headers,
            json={
                "version_date": "2025-06-27T08:38:26.936Z",
                "reason_type": "remote",
                "content_type": 1,
                "object_id": 5,
            },
        )
        listed = httpx.get(base, headers=headers)
        mine = httpx.get(base, headers=headers, params={"object_id": 5})
        console = httpx.get(f"http://127.0.0.1:{port}/", follow_redirects=True)
        login = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/auth/login/",
            json={"username": "demo", "password": "demo"},
        )

        # Metrics of both gunicorn workers, added up (multiprocess mode): every list GET is
        # counted, whichever worker answered it.
        for _ in range(10):
            httpx.get(base, headers=headers)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics")
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(scraped.text)
            for sample in family.samples
        }
        lists = (
            "fi_http_requests_total",
            (("method", "GET"), ("route", "failed-integration-list"), ("status", "200")),
        )
        assert samples[lists] == 12
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        assert len(ready.headers["X-Request-ID"]) == 32
        # The access log: one line a request, with its request id.
        server.send_signal(signal.SIGTERM)
        output += server.communicate(timeout=30)[0]
        assert f"request_id={ready.headers['X-Request-ID']}]" in output
        assert "route=ready" in output
        assert output.count("GET /api/v1/channel/") >= 12

        assert created.status_code == 201, created.text
        # The demo channel holds its seeded failures (every state) and the one reported.
        assert listed.json()["count"] > 100
        assert [row["pk"] for row in mine.json()["results"]] == [created.json()["pk"]]
        assert console.status_code == 200 and 'name="username"' in console.text
        assert "Console: " in output
        assert login.status_code == 200
        assert (tmp_path / "db.sqlite3").exists()
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)


def test_with_log_format_json_every_line_is_a_json_object(tmp_path):
    """gunicorn's own lines (start-up, workers, shutdown), the access log and the service's."""
    port = free_port()
    server = serve(tmp_path, port, LOG_FORMAT="json")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        missing = httpx.get(f"http://127.0.0.1:{port}/api/v1/nothing/")
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=30)[0]

    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert answer.status_code == 200 and missing.status_code == 404
    assert any(
        line["logger"] == "gunicorn.error" and "Listening at" in line["message"] for line in lines
    )
    access = [line for line in lines if line["logger"] == "fi.access"]
    assert [(line["route"], line["status"]) for line in access][-2:] == [
        ("ready", 200),
        ("unmatched", 404),
    ]
    assert access[-1]["request_id"] == missing.headers["X-Request-ID"]


def test_serve_demo_refuses_a_bind_other_machines_reach(tmp_path):
    """The demo user (demo/demo) may change every channel: never on the network."""
    port = free_port()
    env = newcomer_environment(tmp_path)
    for bind in (f"0.0.0.0:{port}", f"[::]:{port}", f"example.com:{port}"):
        result = subprocess.run(
            [sys.executable, "manage.py", "serve", "--demo", "--bind", bind],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

        assert result.returncode != 0
        assert "--demo serves only a loopback address" in result.stderr
        assert not (tmp_path / "db.sqlite3").exists()  # refused before anything was made


def outside_an_hour_s_end() -> None:
    """The login windows are clock hours here: a test that began at :59:50 would see two."""
    into = time.time() % 3600
    if into > 3600 - 30:
        time.sleep(3600 - into + 1)


@pytest.mark.parametrize("proxies", [1, 0])
def test_the_login_throttle_holds_across_worker_processes_and_behind_proxies(tmp_path, proxies):
    """Two gunicorn worker processes (each attempt on a connection of its own, whichever
    worker takes it) share one count per client address. Behind one proxy (NUM_PROXIES=1) the
    address is the one the proxy added last to X-Forwarded-For: a client that writes its own
    entries first gains nothing, and another client is not throttled. Without proxies the
    header is the client's own, and ignored."""
    outside_an_hour_s_end()
    port = free_port()
    server = serve(
        tmp_path,
        port,
        "--demo",
        "--workers",
        "2",
        LOGIN_RATE="5/hour",
        NUM_PROXIES=str(proxies),
    )
    login = f"http://127.0.0.1:{port}/api/v1/auth/login/"

    def attempt(forwarded: str, password: str) -> int:
        with httpx.Client() as http:  # a connection of its own
            return http.post(
                login,
                json={"username": "demo", "password": password},
                headers={"X-Forwarded-For": forwarded},
            ).status_code

    try:
        wait_listening(server)
        # The client (203.0.113.9, as the proxy saw it) makes up a new first entry each time.
        guesses = [attempt(f"10.0.0.{i}, 203.0.113.9", "wrong") for i in range(8)]
        right = attempt("10.0.0.99, 203.0.113.9", "demo")
        other = attempt("203.0.113.10", "demo")
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)

    assert guesses == [400] * 5 + [429] * 3
    assert right == 429  # the address is throttled, not the guess
    # Behind the proxy another client may log in; without one, every attempt came from
    # 127.0.0.1, whatever the header said.
    assert other == (200 if proxies else 429)
