"""`manage.py serve --demo`, the README's first command, on a fresh SQLite file."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_migrates_prints_a_token_and_answers(tmp_path):
    port = free_port()
    env = {
        k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env["DATA_DIR"] = str(tmp_path)
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--demo", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = ""
        deadline = time.monotonic() + 60
        while "Listening at" not in output and time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line:
                break
            output += line
        assert "Listening at" in output, output
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

        assert created.status_code == 201, created.text
        # The demo channel holds its seeded failures (every state) and the one reported.
        assert listed.json()["count"] > 100
        assert [row["pk"] for row in mine.json()["results"]] == [created.json()["pk"]]
        assert console.status_code == 200 and 'name="username"' in console.text
        assert "Console: " in output
        assert login.status_code == 200
        assert (tmp_path / "db.sqlite3").exists()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def test_serve_demo_refuses_a_bind_other_machines_reach(tmp_path):
    """The demo user (demo/demo) may change every channel: never on the network."""
    port = free_port()
    env = {
        k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env["DATA_DIR"] = str(tmp_path)
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
