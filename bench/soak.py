"""bench/soak: the service under its production server on PostgreSQL, several clients of mixed
traffic for a few minutes; afterwards the database must hold exactly what the clients were told.

Started by bench/soak (which installs the project first):

    bench/soak                               8 clients for 180 s
    bench/soak --clients 4 --duration 60     a shorter one
    bench/soak --help                        every flag

It creates a PostgreSQL database of its own (`fi_soak` on 127.0.0.1:5432 by default, marked
with a comment; a database without that mark is never dropped), migrates it, creates a channel
and a staff token, starts `manage.py serve` (DJANGO_ENV=production, gunicorn) on a free port of
127.0.0.1 and drives it with `--clients` threads, each with a keep-alive HTTP client and a range
of object ids of its own. Each client remembers what every answer acknowledged; afterwards the
records are read from the database and compared, and the list's counts (which the service keeps
in trigger-maintained tables) are checked against the clients' own tally, before and after the
count deltas are folded (`manage.py compact_counts`). Writes bench/SOAK.md. Exits 1 on any
5xx, transport error, unexpected answer or mismatch.

The helpers at the top (servers, tokens, the machine description) are shared with
bench/pg_restart.py.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import random
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from psycopg import sql

from .contention import (
    SHARED_OBJECTS,
    LoadClient,
    RetryRun,
    SharedClient,
    SharedStats,
    verify_shared,
)

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
UTC = dt.UTC


# --- shared helpers --------------------------------------------------------------------------


def log(message: str = "") -> None:
    print(message, flush=True)


class Failure(Exception):
    """A failure that stops the run with a message (and no traceback)."""


def exit_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so that `finally` blocks stop what was started."""

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


class PidFile:
    """What must be stopped should this process be killed outright: the wrapper's trap reads it
    (lines `group <process group>` and `pgdata <directory>`)."""

    def __init__(self, path: str | None = None):
        self.path = Path(path) if path else None
        self.lines: list[str] = []

    def _write(self) -> None:
        if self.path:
            self.path.write_text("".join(f"{line}\n" for line in self.lines))

    def add(self, kind: str, value: object) -> None:
        self.lines.append(f"{kind} {value}")
        self._write()

    def discard(self, kind: str, value: object) -> None:
        with contextlib.suppress(ValueError):
            self.lines.remove(f"{kind} {value}")
        self._write()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url(server_url: str, name: str) -> str:
    """The URL of database `name` on the server of `server_url` (whose path is ignored)."""
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


def service_env(db_url: str, data_dir: Path) -> dict[str, str]:
    """The environment of the service in production mode on `db_url`."""
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "FI_PIDFILE"}}
    env.update(
        DJANGO_ENV="production",
        DATABASE_URL=db_url,
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="false",
        DATA_DIR=str(data_dir),
        PYTHONUNBUFFERED="1",
    )
    return env


def manage(args: list[str], env: dict[str, str], timeout: float = 300) -> str:
    """Runs `manage.py ARGS`; answers its output (Failure with the output if it fails)."""
    try:
        result = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as error:
        raise Failure(f"manage.py {shlex.join(args)} took more than {timeout:g} s") from error
    if result.returncode != 0:
        raise Failure(f"manage.py {shlex.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


@dataclass
class Setup:
    channel_id: int
    key: str


def set_up_service_data(env: dict[str, str], name: str) -> Setup:
    """Migrates the database of `env`, creates a channel and a staff user with a token."""
    log("== Migrations")
    manage(["migrate", "--no-input", "-v", "0"], env)
    output = manage(["channel", "--name", name], env).strip()
    if not output.startswith("channel ") or ":" not in output:
        raise Failure(f"manage.py channel printed {output!r}")
    channel_id = int(output.split(":", 1)[0].split()[1])
    key = manage(["create_token", name, "--create", "--staff"], env).strip().splitlines()[-1]
    log(f"   channel {channel_id}, staff user {name!r} with a token")
    return Setup(channel_id, key)


class Service:
    """`manage.py serve` (gunicorn, production settings) in a process group of its own."""

    def __init__(self, env: dict[str, str], log_path: Path, pidfile: PidFile, workers: int = 2):
        self.port = free_port()
        self.log_path = log_path
        self.pidfile = pidfile
        self.command = [
            PYTHON,
            "manage.py",
            "serve",
            "--no-migrate",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(workers),
        ]
        with log_path.open("ab") as output:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        pidfile.add("group", self.process.pid)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise Failure(f"the service stopped at start-up:\n{self.log_tail()}")
            try:
                answer = httpx.get(f"{self.base_url}/healthz", timeout=5)
                if answer.status_code == 200:
                    return
                last = f"{answer.status_code} {answer.text[:200]}"
            except httpx.HTTPError as error:
                last = repr(error)
            time.sleep(0.2)
        raise Failure(
            f"GET /healthz did not answer 200 within {timeout:g} s (last: {last}):\n"
            f"{self.log_tail()}"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # Forked workers may outlive the master for a moment; the group goes with them.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.pidfile.discard("group", self.process.pid)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(no output)"

    def tracebacks(self, limit: int = 3) -> list[str]:
        """The first `limit` tracebacks the server printed (each up to its exception line)."""
        found, current = [], None
        for line in self.log_text().splitlines():
            if line.startswith("Traceback (most recent call last)"):
                current = [line]
            elif current is not None:
                current.append(line)
                if line and not line.startswith((" ", "\t")) and len(current) > 1:
                    found.append("\n".join(current))
                    current = None
        return found[:limit]

    def traceback_count(self) -> int:
        return self.log_text().count("Traceback (most recent call last)")


def content_type_id(base_url: str, key: str, app_label: str, model: str) -> int:
    answer = httpx.get(
        f"{base_url}/api/v1/content_types/",
        params={"app_label": app_label, "model": model},
        headers={"Authorization": f"Token {key}"},
        timeout=30,
    )
    if answer.status_code != 200 or not answer.json().get("results"):
        raise Failure(
            f"GET /api/v1/content_types/?app_label={app_label}&model={model} answered "
            f"{answer.status_code}: {answer.text[:300]}"
        )
    return answer.json()["results"][0]["id"]


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of `values` (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def command_output(command: list[str]) -> str:
    try:
        return subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=20
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine_description(postgres_url: str) -> list[tuple[str, str]]:
    cpu = ""
    for line in command_output(["lscpu"]).splitlines():
        if line.startswith("Model name:"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    try:
        with psycopg.connect(postgres_url, connect_timeout=5) as connection:
            version = connection.execute("SELECT version()").fetchone()[0].split(" on ")[0]
    except psycopg.Error:
        version = "?"
    return [
        ("CPU", f"{cpu or platform.processor() or '?'}, nproc {command_output(['nproc'])}"),
        ("memory", memory),
        ("PostgreSQL", version),
        ("Python", platform.python_version()),
    ]


def markdown_table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def text_table(header: list[str], rows: list[list[object]]) -> list[str]:
    cells = [header, *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in cells]


def parse_datetime(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


def random_datetime(rng: random.Random, *, future: bool = False) -> str:
    """An RFC 3339 date-time within a year of now, at microseconds, with some offset."""
    now = dt.datetime.now(UTC)
    shift = dt.timedelta(seconds=rng.randint(60, 365 * 86400), microseconds=rng.randint(0, 10**6))
    moment = now + shift if future else now - shift
    offset = dt.timezone(dt.timedelta(hours=rng.choice([0, 0, 3, -5, 5.5])))
    return moment.astimezone(offset).isoformat(timespec="microseconds")


# --- the soak test ---------------------------------------------------------------------------

MARK = "failed-integrations soak test database, created by bench/soak; safe to drop"
# The fields a client writes and compares (as the API names them).
WRITABLE = (
    "version_date",
    "reason_type",
    "is_active",
    "content_type",
    "object_id",
    "expiration_date",
    "retry_count",
    "max_retry_count",
    "retry_interval",
    "integration_action",
    "log_id",
)
DATETIME_FIELDS = {"version_date", "expiration_date"}
COLUMNS = {
    "version_date": "version_date",
    "reason_type": "reason_type",
    "is_active": "is_active",
    "content_type": "content_type_id",
    "object_id": "object_id",
    "expiration_date": "expiration_date",
    "retry_count": "retry_count",
    "max_retry_count": "max_retry_count",
    "retry_interval": "retry_interval",
    "integration_action": "integration_action_id",
    "log_id": "log_id",
}
REASON_TYPES = ("mapping", "remote", "channel_app")
CONTENT_TYPES = (("products", "product"), ("prices", "productprice"), ("stocks", "productstock"))
OBJECT_IDS_PER_CLIENT = 10**12
# Operations and their weights (bulk adds 20-100 records: it is rarer).
OPERATIONS = (
    ("create", 28),
    ("list", 16),
    ("get", 20),
    ("patch", 16),
    ("delete", 9),
    ("bulk", 4),
    ("park", 2),
)
EXAMPLES_KEPT = 5


def same_value(name: str, a: Any, b: Any) -> bool:
    if name in DATETIME_FIELDS:
        a = parse_datetime(a) if isinstance(a, str) else a
        b = parse_datetime(b) if isinstance(b, str) else b
    return a == b


@dataclass
class Record:
    pk: int
    object_id: int
    fields: dict[str, Any]  # the writable fields, as last acknowledged
    parked: bool = False
    deleted: bool = False


class LiveSet:
    """The pks of a client's live records: add, remove and pick at random in O(1)."""

    def __init__(self) -> None:
        self.items: list[int] = []
        self.index: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.items)

    def add(self, pk: int) -> None:
        self.index[pk] = len(self.items)
        self.items.append(pk)

    def remove(self, pk: int) -> None:
        position = self.index.pop(pk)
        last = self.items.pop()
        if last != pk:
            self.items[position] = last
            self.index[last] = position


@dataclass
class ClientStats:
    requests: Counter = field(default_factory=Counter)  # per operation
    classes: Counter = field(default_factory=Counter)  # 2xx, 4xx, 5xx, transport
    latencies: dict[str, list[float]] = field(default_factory=dict)  # per operation, seconds
    unexpected: Counter = field(default_factory=Counter)  # per operation
    problems: Counter = field(default_factory=Counter)  # kind -> count
    examples: dict[str, list[str]] = field(default_factory=dict)  # kind -> a few descriptions

    def problem(self, kind: str, description: str) -> None:
        self.problems[kind] += 1
        kept = self.examples.setdefault(kind, [])
        if len(kept) < EXAMPLES_KEPT:
            kept.append(description)

    def merge(self, other: ClientStats) -> None:
        self.requests.update(other.requests)
        self.classes.update(other.classes)
        for name, values in other.latencies.items():
            self.latencies.setdefault(name, []).extend(values)
        self.unexpected.update(other.unexpected)
        self.problems.update(other.problems)
        for kind, kept in other.examples.items():
            mine = self.examples.setdefault(kind, [])
            mine.extend(kept[: EXAMPLES_KEPT - len(mine)])


def status_class(status: int) -> str:
    return f"{status // 100}xx"


class Client(LoadClient):
    """One client: a keep-alive connection, its own object ids, a random mix of operations."""

    def __init__(
        self, index: int, *, base_url: str, key: str, channel_id: int, content_types: list[int]
    ):
        super().__init__(name=f"client-{index}", daemon=True)
        self.index = index
        self.base_url = base_url
        self.key = key
        self.channel_id = channel_id
        self.content_types = content_types
        self.rng = random.Random(f"soak-{index}-{secrets.token_hex(4)}")
        self.path = f"/api/v1/channel/{channel_id}/failed_integrations/"
        self.next_object_id = (index + 1) * OBJECT_IDS_PER_CLIENT
        self.records: dict[int, Record] = {}
        self.all_pks: list[int] = []
        self.live = LiveSet()
        self.stats = ClientStats()
        self.deadline = 0.0
        self.crash: str | None = None

    # -- requests ---------------------------------------------------------------------------

    def call(
        self, http: httpx.Client, operation: str, method: str, url: str, **kwargs
    ) -> httpx.Response | None:
        self.stats.requests[operation] += 1
        started = time.perf_counter()
        try:
            answer = http.request(method, url, **kwargs)
        except httpx.HTTPError as error:
            self.stats.classes["transport"] += 1
            self.stats.problem("transport error", f"{method} {url}: {error!r}")
            return None
        self.stats.latencies.setdefault(operation, []).append(time.perf_counter() - started)
        self.stats.classes[status_class(answer.status_code)] += 1
        if answer.status_code >= 500:
            self.stats.problem(
                "5xx answer", f"{method} {url} -> {answer.status_code} {answer.text[:500]}"
            )
        return answer

    def expect(self, answer: httpx.Response | None, operation: str, *statuses: int) -> bool:
        if answer is None:
            return False
        if answer.status_code in statuses:
            return True
        self.stats.unexpected[operation] += 1
        if answer.status_code < 500:  # 5xx answers are reported as such
            request = answer.request
            self.stats.problem(
                "unexpected answer",
                f"{request.method} {request.url.raw_path.decode()} -> {answer.status_code} "
                f"(expected {'/'.join(map(str, statuses))}) {answer.text[:300]}",
            )
        return False

    def mismatch(self, kind: str, description: str) -> None:
        self.stats.problem(kind, description)

    # -- the model --------------------------------------------------------------------------

    def new_body(self) -> dict[str, Any]:
        rng = self.rng
        self.next_object_id += 1
        body: dict[str, Any] = {
            "version_date": random_datetime(rng),
            "reason_type": rng.choice(REASON_TYPES),
            "content_type": rng.choice(self.content_types),
            "object_id": self.next_object_id,
        }
        if rng.random() < 0.5:
            body["max_retry_count"] = rng.randint(1, 8)
            body["retry_count"] = rng.randint(0, body["max_retry_count"])
        if rng.random() < 0.5:
            body["retry_interval"] = rng.choice([0, 30, 300, 3600])
        if rng.random() < 0.3:
            body["log_id"] = rng.randint(1, 10**12)
        if rng.random() < 0.2:
            body["expiration_date"] = random_datetime(rng, future=True)
        if rng.random() < 0.3:
            body["channel"] = self.channel_id
        return body

    def check_echo(self, what: str, sent: dict[str, Any], answered: dict[str, Any]) -> bool:
        """The answer must carry the values the request wrote."""
        ok = True
        for name, value in sent.items():
            if name == "channel":
                continue
            if not same_value(name, answered.get(name), value):
                ok = False
                self.mismatch(
                    "answer differs from request",
                    f"{what}: {name} sent {value!r}, answered {answered.get(name)!r}",
                )
        return ok

    def remember(self, answered: dict[str, Any]) -> None:
        pk = answered["pk"]
        if pk in self.records:
            self.mismatch("pk answered twice", f"pk {pk} was answered for two creations")
        record = Record(pk, answered["object_id"], {name: answered[name] for name in WRITABLE})
        self.records[pk] = record
        self.all_pks.append(pk)
        self.live.add(pk)

    def compare(self, what: str, record: Record, answered: dict[str, Any]) -> None:
        for name in WRITABLE:
            if not same_value(name, answered.get(name), record.fields[name]):
                self.mismatch(
                    "read differs from acknowledged write",
                    f"{what} pk {record.pk}: {name} read {answered.get(name)!r}, "
                    f"acknowledged {record.fields[name]!r}",
                )

    # -- operations -------------------------------------------------------------------------

    def op_create(self, http: httpx.Client) -> None:
        body = self.new_body()
        answer = self.call(http, "create", "POST", self.path, json=body)
        if self.expect(answer, "create", 201):
            answered = answer.json()
            self.check_echo(f"POST object_id {body['object_id']}", body, answered)
            self.remember(answered)

    def op_bulk(self, http: httpx.Client) -> None:
        bodies = [self.new_body() for _ in range(self.rng.randint(20, 100))]
        answer = self.call(http, "bulk", "POST", f"{self.path}bulk/", json=bodies)
        if not self.expect(answer, "bulk", 201):
            return
        data = answer.json()
        results = data.get("results") or []
        if data.get("count") != len(bodies) or len(results) != len(bodies):
            self.mismatch(
                "bulk answer incomplete",
                f"POST bulk/ of {len(bodies)}: count {data.get('count')}, {len(results)} results",
            )
        by_object = {item["object_id"]: item for item in results}
        for body in bodies:
            answered = by_object.get(body["object_id"])
            if answered is None:
                self.mismatch(
                    "bulk answer incomplete", f"bulk/: object_id {body['object_id']} not answered"
                )
                continue
            self.check_echo(f"bulk object_id {body['object_id']}", body, answered)
            self.remember(answered)

    def op_list(self, http: httpx.Client) -> None:
        rng = self.rng
        choice = rng.randrange(7)
        if choice == 0 and self.all_pks:
            self.list_own(http)
            return
        params: dict[str, Any] = [
            {"limit": 10},
            {"reason_type": rng.choice(REASON_TYPES), "limit": 20},
            {"is_active": "true", "sort": "-version_date", "limit": 10},
            {"exhausted": "false", "content_type": rng.choice(self.content_types), "limit": 10},
            {"cursor": "*", "limit": 50, "sort": "retry_count"},
            {"retry_count__gte": 3, "sort": "-pk", "limit": 5},
            {"parked": "true", "limit": 10},
        ][choice]
        answer = self.call(http, "list", "GET", self.path, params=params)
        if self.expect(answer, "list", 200):
            data = answer.json()
            if not isinstance(data.get("count"), int) or not isinstance(data.get("results"), list):
                self.mismatch("bad list answer", f"GET list {params}: {answer.text[:300]}")

    def list_own(self, http: httpx.Client) -> None:
        """Lists some of this client's records by object id: only it writes them, so the page
        must be exactly what it was told (deleted ones absent, the others as acknowledged)."""
        chosen = [
            self.records[pk] for pk in self.rng.sample(self.all_pks, min(50, len(self.all_pks)))
        ]
        params = {
            "object_id__in": ",".join(str(r.object_id) for r in chosen),
            "limit": 100,
        }
        answer = self.call(http, "list", "GET", self.path, params=params)
        if not self.expect(answer, "list", 200):
            return
        data = answer.json()
        expected = {r.pk: r for r in chosen if not r.deleted}
        got = {item["pk"]: item for item in data.get("results", [])}
        if data.get("count") != len(expected) or set(got) != set(expected):
            self.mismatch(
                "list of own records differs",
                f"GET list object_id__in ({len(chosen)} ids): count {data.get('count')}, "
                f"pks {sorted(got)[:10]}..., expected {len(expected)}: {sorted(expected)[:10]}...",
            )
        for pk, item in got.items():
            if pk in expected:
                self.compare("list", expected[pk], item)

    def op_get(self, http: httpx.Client) -> None:
        record = self.records[self.rng.choice(self.all_pks)]
        answer = self.call(http, "get", "GET", f"{self.path}{record.pk}/")
        if record.deleted:
            self.expect(answer, "get", 404)
        elif self.expect(answer, "get", 200):
            self.compare("GET", record, answer.json())

    def patch_body(self) -> dict[str, Any]:
        rng = self.rng
        name = rng.choice(
            [
                "retry_count",
                "max_retry_count",
                "retry_interval",
                "log_id",
                "reason_type",
                "expiration_date",
                "version_date",
                "is_active",
            ]
        )
        value: Any = {
            "retry_count": lambda: rng.randint(0, 10),
            "max_retry_count": lambda: rng.randint(1, 10),
            "retry_interval": lambda: rng.choice([0, 60, 300, 3600]),
            "log_id": lambda: rng.choice([None, rng.randint(1, 10**12)]),
            "reason_type": lambda: rng.choice(REASON_TYPES),
            "expiration_date": lambda: rng.choice([None, random_datetime(rng, future=True)]),
            "version_date": lambda: random_datetime(rng),
            "is_active": lambda: rng.random() < 0.7,
        }[name]()
        return {name: value}

    def op_patch(self, http: httpx.Client) -> None:
        record = self.records[self.rng.choice(self.live.items)]
        body = self.patch_body()
        answer = self.call(http, "patch", "PATCH", f"{self.path}{record.pk}/", json=body)
        if self.expect(answer, "patch", 200):
            answered = answer.json()
            self.check_echo(f"PATCH pk {record.pk}", body, answered)
            record.fields.update(body)
            # The other fields must be as they were (a PATCH writes only what it names).
            self.compare("PATCH answer", record, answered)
            record.fields = {name: answered[name] for name in WRITABLE}

    def op_delete(self, http: httpx.Client) -> None:
        pk = self.rng.choice(self.live.items)
        answer = self.call(http, "delete", "DELETE", f"{self.path}{pk}/")
        if self.expect(answer, "delete", 204):
            self.records[pk].deleted = True
            self.live.remove(pk)

    def op_park(self, http: httpx.Client) -> None:
        chosen = [
            self.records[pk]
            for pk in self.rng.sample(self.live.items, min(self.rng.randint(1, 30), len(self.live)))
        ]
        params = {"object_id__in": ",".join(str(r.object_id) for r in chosen)}
        answer = self.call(http, "park", "POST", f"{self.path}park/", params=params)
        if not self.expect(answer, "park", 200):
            return
        data = answer.json()
        # Park changes the active records that are not parked yet.
        changed = [r for r in chosen if r.fields["is_active"] and not r.parked]
        if data.get("matched") != len(chosen) or data.get("affected") != len(changed):
            self.mismatch(
                "park answer differs",
                f"POST park/ on {len(chosen)} records ({len(changed)} active and not parked): "
                f"answered {data}",
            )
        for record in changed:
            record.parked = True

    def choose(self) -> str:
        names, weights = zip(*OPERATIONS, strict=True)
        name = self.rng.choices(names, weights)[0]
        if name in ("patch", "delete", "park") and not self.live:
            return "create"
        if name == "get" and not self.all_pks:
            return "create"
        return name

    def step(self, http: httpx.Client) -> None:
        getattr(self, f"op_{self.choose()}")(http)


# --- verification ----------------------------------------------------------------------------


def verify_database(
    db_url: str, channel_id: int, records: dict[int, Record], stats: ClientStats
) -> dict[str, int]:
    """Every acknowledged record as acknowledged, every deleted one gone, nothing else."""
    columns = ", ".join(COLUMNS[name] for name in WRITABLE)
    with psycopg.connect(db_url, connect_timeout=10) as connection:
        rows = connection.execute(
            f"SELECT id, {columns}, parked FROM integrations_failedintegration "
            "WHERE channel_id = %s",
            (channel_id,),
        ).fetchall()
    stored = {row[0]: row for row in rows}
    checked = {"live": 0, "deleted": 0, "parked": 0, "rows": len(stored)}
    for pk, record in records.items():
        row = stored.get(pk)
        if record.deleted:
            checked["deleted"] += 1
            if row is not None:
                stats.problem("deleted (204) but still stored", f"pk {pk}")
            continue
        checked["live"] += 1
        checked["parked"] += record.parked
        if row is None:
            stats.problem("acknowledged but not stored", f"pk {pk} object_id {record.object_id}")
            continue
        for position, name in enumerate(WRITABLE, start=1):
            if not same_value(name, row[position], record.fields[name]):
                stats.problem(
                    "stored differs from acknowledged",
                    f"pk {pk}: {name} stored {row[position]!r}, acknowledged "
                    f"{record.fields[name]!r}",
                )
        if row[-1] != record.parked:
            stats.problem(
                "parked flag differs", f"pk {pk}: stored {row[-1]}, expected {record.parked}"
            )
    for pk in stored.keys() - records.keys():
        stats.problem("stored but never acknowledged", f"pk {pk} object_id {stored[pk][5]}")
    return checked


def count_filters(content_types: list[int]) -> list[dict[str, str]]:
    filters: list[dict[str, str]] = [{}]
    filters += [{"reason_type": reason} for reason in REASON_TYPES]
    filters += [{"content_type": str(ct)} for ct in content_types]
    filters += [
        {"is_active": "true"},
        {"is_active": "false"},
        {"exhausted": "true"},
        {"exhausted": "false"},
        {"parked": "true"},
        {"reason_type": "remote", "is_active": "true", "exhausted": "false"},
        {"content_type": str(content_types[0]), "reason_type": "mapping"},
        {"retry_count": "3"},
        {"retry_count__gte": "5"},
        {"max_retry_count__lte": "2"},
        {"retry_interval": "300"},
        {"retry_interval__gt": "0", "is_active": "true"},
        {"log_id__isnull": "true"},
        {"expiration_date__isnull": "false"},
    ]
    return filters


def model_count(live: list[Record], filters: dict[str, str]) -> int:
    def matches(record: Record) -> bool:
        f = record.fields
        for name, value in filters.items():
            base, _, lookup = name.partition("__")
            if base == "exhausted":
                actual: Any = f["retry_count"] >= f["max_retry_count"]
            elif base == "parked":
                actual = record.parked
            else:
                actual = f[base]
            if lookup == "isnull":
                if (actual is None) != (value == "true"):
                    return False
                continue
            if isinstance(actual, bool):
                wanted: Any = value == "true"
            elif isinstance(actual, int) or base in ("retry_count", "content_type"):
                wanted = int(value)
            else:
                wanted = value
            ok = {
                "": lambda a, w: a == w,
                "gte": lambda a, w: a >= w,
                "gt": lambda a, w: a > w,
                "lte": lambda a, w: a <= w,
                "lt": lambda a, w: a < w,
            }[lookup](actual, wanted)
            if not ok:
                return False
        return True

    return sum(1 for record in live if matches(record))


def verify_counts(
    base_url: str,
    key: str,
    channel_id: int,
    records: dict[int, Record],
    content_types: list[int],
    stats: ClientStats,
    when: str,
) -> int:
    """The list's `count` (and the group counts) for a set of filters equals the tally."""
    live = [r for r in records.values() if not r.deleted]
    path = f"{base_url}/api/v1/channel/{channel_id}/failed_integrations/"
    checked = 0
    with httpx.Client(headers={"Authorization": f"Token {key}"}, timeout=60) as http:
        for filters in count_filters(content_types):
            expected = model_count(live, filters)
            answer = http.get(path, params={**filters, "limit": 1})
            checked += 1
            count = answer.json().get("count") if answer.status_code == 200 else None
            if count != expected:
                stats.problem(
                    "list count differs",
                    f"{when}: GET list {filters or '(no filter)'} count {count} "
                    f"({answer.status_code}), expected {expected}",
                )
        group_by = ["reason_type", "content_type", "is_active", "exhausted"]
        answer = http.get(f"{path}stats/", params={"group_by": ",".join(group_by)})
        checked += 1
        expected_groups = Counter(
            (
                r.fields["reason_type"],
                r.fields["content_type"],
                r.fields["is_active"],
                r.fields["retry_count"] >= r.fields["max_retry_count"],
            )
            for r in live
        )
        got_groups: Counter | None = None
        if answer.status_code == 200:
            got_groups = Counter(
                {
                    tuple(item[name] for name in group_by): item["count"]
                    for item in answer.json().get("results", [])
                    if item["count"]
                }
            )
        if got_groups != expected_groups:
            stats.problem(
                "group counts differ",
                f"{when}: GET stats/?group_by={','.join(group_by)} answered "
                f"{answer.status_code} {dict(got_groups or {})}, expected {dict(expected_groups)}",
            )
    return checked


# --- database --------------------------------------------------------------------------------


def _mark(connection: psycopg.Connection, name: str) -> tuple[bool, str | None]:
    row = connection.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
        (name,),
    ).fetchone()
    return (row is not None, row[0] if row else None)


def create_database(server_url: str, name: str) -> str:
    """Creates database `name` afresh (dropping an earlier one of bench/soak's); its URL."""
    admin = database_url(server_url, "postgres")
    try:
        connection = psycopg.connect(admin, autocommit=True, connect_timeout=5)
    except psycopg.Error as error:
        raise Failure(f"cannot connect to PostgreSQL at {admin}: {error}") from error
    with connection:
        exists, mark = _mark(connection, name)
        if exists and mark != MARK:
            raise Failure(
                f"database {name!r} exists and was not created by bench/soak: choose another "
                "--database"
            )
        if exists:
            connection.execute(
                sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name))
            )
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        connection.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(MARK))
        )
    return database_url(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(
        database_url(server_url, "postgres"), autocommit=True, connect_timeout=5
    ) as connection:
        exists, mark = _mark(connection, name)
        if exists and mark == MARK:
            connection.execute(
                sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name))
            )


# --- report ----------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def report(
    options: argparse.Namespace,
    stats: ClientStats,
    elapsed: float,
    checked: dict[str, int],
    counts_checked: int,
    machine: list[tuple[str, str]],
    server_tracebacks: int,
    contention: list[tuple[str, object, list[str]]],
) -> tuple[list[str], list[str], bool]:
    """The summary as text (for the terminal) and as Markdown lines; and the verdict.
    `contention`: the checks of bench/contention.py (what, how many checked, its problems)."""
    total = sum(stats.requests.values())
    answered = [v for values in stats.latencies.values() for v in values]
    mismatches = sum(
        n
        for kind, n in stats.problems.items()
        if kind not in ("5xx answer", "transport error", "unexpected answer")
    )
    failed = (
        stats.classes["5xx"]
        + stats.classes["transport"]
        + sum(stats.unexpected.values())
        + mismatches
        + server_tracebacks
        + sum(len(problems) for *_, problems in contention)
    ) > 0
    load_header = [
        "clients",
        "duration s",
        "requests",
        "requests/s",
        "2xx",
        "4xx",
        "5xx",
        "transport errors",
        "p50 ms",
        "p99 ms",
        "mismatches",
    ]
    load_row = [
        options.clients,
        f"{elapsed:.0f}",
        total,
        f"{total / elapsed:.0f}" if elapsed else "0",
        stats.classes["2xx"],
        stats.classes["4xx"],
        stats.classes["5xx"],
        stats.classes["transport"],
        ms(percentile(answered, 0.50)),
        ms(percentile(answered, 0.99)),
        mismatches,
    ]
    op_header = ["operation", "requests", "unexpected answers", "p50 ms", "p99 ms", "max ms"]
    op_rows = []
    for name, _ in OPERATIONS:
        values = stats.latencies.get(name, [])
        op_rows.append(
            [
                name,
                stats.requests[name],
                stats.unexpected[name],
                ms(percentile(values, 0.5)),
                ms(percentile(values, 0.99)),
                ms(max(values, default=0)),
            ]
        )
    check_header = ["check", "checked", "mismatches"]
    check_rows = [
        [
            "acknowledged records stored as acknowledged",
            checked["live"],
            stats.problems["acknowledged but not stored"]
            + stats.problems["stored differs from acknowledged"],
        ],
        [
            "deleted records (204) gone",
            checked["deleted"],
            stats.problems["deleted (204) but still stored"],
        ],
        [
            "parked flags (of which parked)",
            f"{checked['live']} ({checked['parked']})",
            stats.problems["parked flag differs"] + stats.problems["park answer differs"],
        ],
        [
            "no unacknowledged rows",
            checked["rows"],
            stats.problems["stored but never acknowledged"],
        ],
        [
            "list counts and group counts (before and after compact_counts)",
            counts_checked,
            stats.problems["list count differs"] + stats.problems["group counts differ"],
        ],
        [
            "answers echo the request",
            "every write",
            stats.problems["answer differs from request"]
            + stats.problems["bulk answer incomplete"],
        ],
        [
            "reads equal the acknowledged writes (GET, own lists)",
            stats.requests["get"] + stats.requests["list"],
            stats.problems["read differs from acknowledged write"]
            + stats.problems["list of own records differs"]
            + stats.problems["bad list answer"],
        ],
        *[[what, checked, len(problems)] for what, checked, problems in contention],
        ["tracebacks in the server's output", "", server_tracebacks],
    ]
    verdict = "FAIL" if failed else "PASS"
    text = [
        *text_table(load_header, [load_row]),
        "",
        *text_table(op_header, op_rows),
        "",
        *text_table(check_header, check_rows),
    ]
    problem_lines = []
    for kind, count in sorted(stats.problems.items()):
        problem_lines.append(f"{kind}: {count}")
        problem_lines += [f"    {example}" for example in stats.examples.get(kind, [])]
    for what, _, problems in contention:
        if problems:
            problem_lines.append(f"{what}: {len(problems)}")
            problem_lines += [f"    {example}" for example in problems[:5]]
    if problem_lines:
        text += ["", "Problems:", *problem_lines]
    text += ["", f"Verdict: {verdict}"]

    command = "bench/soak" + (" " + shlex.join(options.argv) if options.argv else "")
    md = [
        "# Soak test",
        "",
        "The service under its production server (`manage.py serve`, gunicorn, "
        f"`--workers {options.workers}`) on PostgreSQL, {options.clients} concurrent clients of "
        f"mixed traffic for {options.duration:g} s, each on objects of its own; beside them "
        f"{options.shared_clients} clients reporting failures of the same {SHARED_OBJECTS} "
        "objects (supersedes racing) and parking by object while others create, and a retry "
        f"worker against a channel app that flaps every {options.flap:g} s; afterwards the "
        "database is compared with what the clients were told. See the docstrings of "
        "`bench/soak.py` and `bench/contention.py`.",
        "",
        f"Command: `{command}`",
        "",
        f"Run: {dt.datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; verdict **{verdict}**.",
        "",
        "## Machine",
        "",
        *markdown_table(["", ""], [[k, v] for k, v in machine]),
        "",
        "## Load",
        "",
        *markdown_table(load_header, [load_row]),
        "",
        *markdown_table(op_header, op_rows),
        "",
        "## Checks afterwards",
        "",
        *markdown_table(check_header, check_rows),
    ]
    if problem_lines:
        md += ["", "## Problems", "", "```text", *problem_lines, "```"]
    md.append("")
    return text, md, failed


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/soak",
        description="Mixed traffic from concurrent clients against the service on PostgreSQL; "
        "then the database must match what the clients were told.",
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (8)")
    parser.add_argument("--duration", type=float, default=180, help="seconds of load (180)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument(
        "--shared-clients", type=int, default=2, help="clients on shared objects (2)"
    )
    parser.add_argument(
        "--retry-records", type=int, default=300, help="due records of the retry worker (300)"
    )
    parser.add_argument(
        "--flap", type=float, default=3, help="seconds the retry channel's app is up, then down (3)"
    )
    parser.add_argument(
        "--postgres",
        default="postgres://postgres@127.0.0.1:5432/postgres",
        help="the PostgreSQL server (a user that may create databases)",
    )
    parser.add_argument("--database", default="fi_soak", help="the database it creates (fi_soak)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--output", default=str(ROOT / "bench" / "SOAK.md"), help="the report (bench/SOAK.md)"
    )
    options = parser.parse_args(argv)
    if options.clients < 1 or options.clients > 64:
        parser.error("--clients must be from 1 to 64")
    if options.duration <= 0 or options.duration > 3600:
        parser.error("--duration must be more than 0 and at most 3600 seconds")
    options.argv = argv
    return options


def main(argv: list[str]) -> int:
    options = parse_args(argv)
    exit_on_sigterm()
    pidfile = PidFile(os.environ.get("FI_PIDFILE"))
    workdir = Path(tempfile.mkdtemp(prefix="fi-soak."))
    service: Service | None = None
    retry: RetryRun | None = None
    created = False
    try:
        log(f"== Database {options.database} on {options.postgres}")
        db_url = create_database(options.postgres, options.database)
        created = True
        env = service_env(db_url, workdir / "data")
        setup = set_up_service_data(env, "soak")
        log(f"== Starting the service (gunicorn, {options.workers} workers)")
        service = Service(env, workdir / "server.log", pidfile, workers=options.workers)
        service.wait_healthy()
        content_types = [
            content_type_id(service.base_url, setup.key, app, model) for app, model in CONTENT_TYPES
        ]
        log(f"   {service.base_url}; content types {content_types}")

        clients = [
            Client(
                i,
                base_url=service.base_url,
                key=setup.key,
                channel_id=setup.channel_id,
                content_types=content_types,
            )
            for i in range(options.clients)
        ]
        shared_channel = int(
            manage(["channel", "--name", "soak-shared"], env).split(":", 1)[0].split()[1]
        )
        retry = RetryRun(
            env, manage, port=free_port(), records=options.retry_records, flap=options.flap
        )
        retry.start(service.base_url, setup.key, content_types[0])
        log(
            f"== Load: {options.clients} clients for {options.duration:g} s; "
            f"{options.shared_clients} on shared objects (channel {shared_channel}); a retry "
            f"worker on {options.retry_records} records (channel {retry.channel_id})"
        )
        started = time.monotonic()
        for client in clients:
            client.deadline = started + options.duration
            client.start()
        shared_stats, shared_lock = SharedStats(), threading.Lock()
        shared = [
            SharedClient(
                i,
                base_url=service.base_url,
                key=setup.key,
                channel_id=shared_channel,
                content_type=content_types[0],
                deadline=started + options.duration,
                stats=shared_stats,
                lock=shared_lock,
            )
            for i in range(options.shared_clients)
        ]
        for client in shared:
            client.start()
        progress_at = started
        while any(c.is_alive() for c in [*clients, *shared]):
            time.sleep(0.5)
            now = time.monotonic()
            if now - progress_at >= 15:
                progress_at = now
                done = sum(sum(c.stats.requests.values()) for c in clients)
                log(f"   {now - started:4.0f} s: {done} requests")
            if now > started + options.duration + 120:
                raise Failure("clients still running 120 s after the end of the load")
        elapsed = time.monotonic() - started
        worker_failure = retry.stop()
        for client in shared:
            if client.crash:
                raise Failure(f"{client.name} crashed:\n{client.crash}")

        stats = ClientStats()
        records: dict[int, Record] = {}
        for client in clients:
            stats.merge(client.stats)
            if client.crash:
                raise Failure(f"{client.name} crashed:\n{client.crash}")
            for pk, record in client.records.items():
                if pk in records:
                    stats.problem("pk answered twice", f"pk {pk} answered to two clients")
                records[pk] = record

        log("== Checking the database and the counts")
        checked = verify_database(db_url, setup.channel_id, records, stats)
        shared_checked = verify_shared(db_url, shared_channel, shared_stats)
        retried, retry_problems = retry.verify(db_url)
        if worker_failure:
            retry_problems.insert(0, worker_failure)
        contention = [
            (
                "shared objects: every create stored once as answered, one active failure per "
                "object (the newest), parks within their objects "
                f"({len(shared_stats.creates)} creates, {shared_stats.repeats} sent again with "
                f"their key, {shared_stats.parks} parks)",
                shared_checked,
                shared_stats.problems,
            ),
            (
                "retry worker vs a flapping app: attempts matched by key, retry counts, one "
                "success per resolved record ("
                + ", ".join(f"{k} {v}" for k, v in retried.items() if k != "attempts")
                + ")",
                retried["attempts"],
                retry_problems,
            ),
        ]
        counts_checked = verify_counts(
            service.base_url,
            setup.key,
            setup.channel_id,
            records,
            content_types,
            stats,
            "before compact_counts",
        )
        manage(["compact_counts"], env)
        counts_checked += verify_counts(
            service.base_url,
            setup.key,
            setup.channel_id,
            records,
            content_types,
            stats,
            "after compact_counts",
        )
        tracebacks = service.traceback_count()
        machine = [
            *machine_description(db_url),
            ("service", f"manage.py serve, gunicorn --workers {options.workers}, 127.0.0.1"),
            ("load", f"{options.clients} client threads (httpx, keep-alive), one process"),
        ]
        text, md, failed = report(
            options, stats, elapsed, checked, counts_checked, machine, tracebacks, contention
        )
        log("")
        for line in text:
            log(line)
        if tracebacks:
            log("\nServer tracebacks:")
            for block in service.tracebacks():
                log(block)
        Path(options.output).write_text("\n".join(md))
        log(f"\nWritten to {os.path.relpath(options.output, ROOT)}")
        return 1 if failed else 0
    except Failure as error:
        log(f"\nFAILED: {error}")
        if service is not None:
            log(f"Server output (last lines):\n{service.log_tail()}")
        return 1
    finally:
        if retry is not None:
            retry.close()
        if service is not None:
            service.stop()
        if created and not options.keep:
            with contextlib.suppress(psycopg.Error):
                drop_database(options.postgres, options.database)
        elif created:
            log(f"(database {options.database} kept)")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
