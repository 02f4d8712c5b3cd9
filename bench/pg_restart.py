"""bench/pg_restart: PostgreSQL restarted in the middle of the load.

Started by bench/pg_restart (which installs the project first):

    bench/pg_restart                 10 s of load, 10 s of outage, 15 s after it
    bench/pg_restart --help          every flag

It never touches the machine's own PostgreSQL: it makes a private cluster with Debian's
PostgreSQL binaries (`initdb --auth=trust` in a temporary directory, run as the `postgres` OS
user when started as root), listening on a free port of 127.0.0.1, with a database, a channel
and a staff token of its own, and starts the service against it (`manage.py serve`,
DJANGO_ENV=production). Client threads write (POST) and read (GET list, GET record) without
pause; after `--before` seconds the cluster is stopped (`pg_ctl stop -m fast`, or with
`--stop-mode immediate` a crash), after
`--outage` seconds started again, and the load goes on for `--after` seconds. With
`--stop-mode freeze` the service reaches the cluster through a TCP proxy of this program's,
which at the stop stops forwarding in either direction, its connections kept open (as a
database that stops answering, or a network that stops passing, while the operating system
still acknowledges): the service must give up on its own, within DB_ANSWER_TIMEOUT for a
statement and DB_CONNECT_TIMEOUT for a connection (2 s each here); at the start the proxy drops
the frozen connections and forwards new ones again. Every request is recorded (time, status,
latency, body). The promises, each failing the run when broken:

* during the outage every answer is 503 `{"code": "database_unavailable"}` with a
  `Retry-After` in seconds, never an HTML page, a traceback or a 500, and comes within
  `--max-latency` seconds (no hang); no request ends in a transport error in any phase;
* once PostgreSQL accepts connections again, the same server (not restarted) answers 2xx within
  `--max-recovery` seconds, and every request sent later is answered as before the outage;
* a create (with an `Idempotency-Key`) not answered 201 is sent again with its key until it
  is, as a channel app would: afterwards every create is stored exactly once, with its data,
  and none is stored without its 201 (a write committed as its connection was lost, then
  repeated, answers the first record).

Writes bench/RESTART.md. Everything it started (the service, the cluster, the temporary
directory) is stopped and removed however the run ends.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import pwd
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.proxy import FreezingProxy

from .soak import (
    ROOT,
    Failure,
    PidFile,
    Service,
    content_type_id,
    exit_on_sigterm,
    free_port,
    log,
    machine_description,
    markdown_table,
    percentile,
    random_datetime,
    same_value,
    service_env,
    set_up_service_data,
    text_table,
)

PHASES = ("before", "outage", "after")
OBJECT_IDS_PER_CLIENT = 10**12
# The fields a POST writes and the database must hold afterwards (as the API names them).
CHECKED_FIELDS = {
    "version_date": "version_date",
    "reason_type": "reason_type",
    "content_type": "content_type_id",
    "object_id": "object_id",
    "max_retry_count": "max_retry_count",
    "retry_interval": "retry_interval",
    "log_id": "log_id",
}
BODY_KEPT = 2000
IDEMPOTENCY = "Idempotency-Key"
DRAIN_SECONDS = 20.0  # for a client's unanswered creates once the load stops


# --- the private cluster ---------------------------------------------------------------------


def find_pg_bin(wanted: str | None) -> Path:
    if wanted:
        path = Path(wanted)
        if not (path / "initdb").exists():
            raise Failure(f"no initdb in {path}")
        return path

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.parent.name))

    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=version)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise Failure(
        "PostgreSQL's server binaries (initdb, pg_ctl) were not found: install Debian's "
        "postgresql package or pass --pg-bin"
    )


class Cluster:
    """A PostgreSQL cluster of this run's own, in `workdir`, on a free port of 127.0.0.1."""

    def __init__(self, bindir: Path, workdir: Path, pidfile: PidFile):
        self.bindir = bindir
        self.workdir = workdir
        self.data = workdir / "pgdata"
        self.log_path = workdir / "postgres.log"
        self.port = free_port()
        self.pidfile = pidfile
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            try:
                user = pwd.getpwnam("postgres")
            except KeyError as error:
                raise Failure("running as root needs a `postgres` OS user") from error
            os.chown(workdir, user.pw_uid, user.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.running = False

    def command(self, tool: str, *args: str) -> list[str]:
        return [*self.prefix, str(self.bindir / tool), *args]

    def run(self, tool: str, *args: str, timeout: float = 120) -> str:
        return self.execute(self.command(tool, *args), timeout=timeout)

    def execute(self, command: list[str], timeout: float = 120) -> str:
        try:
            result = subprocess.run(
                command,
                cwd=self.workdir,
                capture_output=True,
                text=True,
                check=False,
                timeout=timeout,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as error:
            raise Failure(f"{shlex.join(command)} took more than {timeout:g} s") from error
        if result.returncode != 0:
            raise Failure(
                f"{shlex.join(command)} failed:\n{result.stdout}{result.stderr}\n{self.log_tail()}"
            )
        return result.stdout

    def init(self) -> None:
        self.run(
            "initdb",
            "-D",
            str(self.data),
            "--auth=trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
        )
        self.pidfile.add("pgdata", self.data)

    def start_command(self) -> list[str]:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        data, log_path = str(self.data), str(self.log_path)
        return self.command("pg_ctl", "-D", data, "-o", options, "-l", log_path, "-w", "start")

    def start(self) -> None:
        self.running = True
        self.execute(self.start_command())

    def stop(self, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        self.running = False

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def accepts_connections(self) -> bool:
        try:
            with psycopg.connect(self.url("postgres"), connect_timeout=2) as connection:
                connection.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def destroy(self) -> None:
        if self.data.exists() and (self.data / "postmaster.pid").exists():
            with contextlib.suppress(Failure):
                self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        self.pidfile.discard("pgdata", self.data)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# --- the load --------------------------------------------------------------------------------


@dataclass
class Answer:
    client: int
    operation: str  # create, list, get
    method: str
    path: str
    started: float  # seconds since the load began
    finished: float
    status: int | None  # None: a transport error (see error)
    content_type: str = ""
    body: str = ""
    error: str = ""
    sent: dict[str, Any] | None = None  # a POST's body
    record: dict[str, Any] | None = None  # a 201's record
    retry_after: str = ""  # the answer's Retry-After
    repeat: bool = False  # a create sent again with its Idempotency-Key

    @property
    def latency(self) -> float:
        return self.finished - self.started

    def describe(self) -> str:
        status = self.status if self.status is not None else f"transport error {self.error}"
        return (
            f"{self.method} {self.path} at {self.started:.2f} s -> {status} in "
            f"{self.latency * 1000:.0f} ms: {self.body[:300]}"
        )


class Client(threading.Thread):
    def __init__(
        self,
        index: int,
        *,
        base_url: str,
        key: str,
        channel_id: int,
        content_type: int,
        origin: float,
        timeout: float,
        stop: threading.Event,
    ):
        super().__init__(name=f"client-{index}", daemon=True)
        self.index = index
        self.base_url = base_url
        self.key = key
        self.path = f"/api/v1/channel/{channel_id}/failed_integrations/"
        self.channel_id = channel_id
        self.content_type = content_type
        self.origin = origin
        self.timeout = timeout
        self.stop = stop
        self.rng = random.Random(index)
        self.next_object_id = (index + 1) * OBJECT_IDS_PER_CLIENT
        self.answers: list[Answer] = []
        self.created: list[dict[str, Any]] = []  # records answered 201
        # Creates not yet answered 201 (an error, or no answer): sent again with their key.
        self.pending: list[dict[str, Any]] = []
        self.crash: str | None = None

    def call(
        self, http: httpx.Client, operation: str, method: str, path: str, **kwargs: Any
    ) -> Answer:
        started = time.monotonic() - self.origin
        try:
            response = http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            answer = Answer(
                self.index, operation, method, path, started, time.monotonic() - self.origin, None
            )
            answer.error = repr(error)
        else:
            answer = Answer(
                self.index,
                operation,
                method,
                str(response.request.url.raw_path.decode()),
                started,
                time.monotonic() - self.origin,
                response.status_code,
                response.headers.get("content-type", ""),
                response.text[:BODY_KEPT] if response.status_code != 200 else "",
                retry_after=response.headers.get("retry-after", ""),
            )
            if operation == "create" and response.status_code == 201:
                answer.record = response.json()
        self.answers.append(answer)
        return answer

    def create(self, http: httpx.Client, body: dict[str, Any], *, repeat: bool) -> None:
        """A report with its Idempotency-Key (its object id: unique in the run); one that is
        not answered 201 is sent again, with the same key, until it is."""
        key = f"restart-{body['object_id']}"
        answer = self.call(http, "create", "POST", self.path, json=body, headers={IDEMPOTENCY: key})
        answer.sent, answer.repeat = body, repeat
        if answer.record is not None:
            self.created.append(answer.record)
        elif not repeat:
            self.pending.append(body)
        if answer.record is not None and repeat:
            self.pending.remove(body)

    def step(self, http: httpx.Client) -> None:
        roll = self.rng.random()
        if self.pending and roll < 0.3:
            self.create(http, self.pending[0], repeat=True)
        elif roll < 0.4 or not self.created:
            self.next_object_id += 1
            body = {
                "version_date": random_datetime(self.rng),
                "reason_type": self.rng.choice(["mapping", "remote", "channel_app"]),
                "content_type": self.content_type,
                "object_id": self.next_object_id,
                "max_retry_count": self.rng.randint(1, 5),
                "retry_interval": self.rng.choice([0, 60, 300]),
                "log_id": self.rng.randint(1, 10**9),
            }
            self.create(http, body, repeat=False)
        elif roll < 0.7:
            if self.rng.random() < 0.5:
                params: dict[str, Any] = {"limit": 10, "sort": "-pk"}
            else:
                chosen = self.rng.sample(self.created, min(20, len(self.created)))
                params = {"object_id__in": ",".join(str(r["object_id"]) for r in chosen)}
            self.call(http, "list", "GET", self.path, params=params)
        else:
            record = self.rng.choice(self.created)
            self.call(http, "get", "GET", f"{self.path}{record['pk']}/")

    def run(self) -> None:
        try:
            with httpx.Client(
                base_url=self.base_url,
                headers={"Authorization": f"Token {self.key}"},
                timeout=httpx.Timeout(self.timeout),
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            ) as http:
                while not self.stop.is_set():
                    self.step(http)
                # The creates still unanswered are sent again until answered (as a channel
                # app would), within a bound.
                deadline = time.monotonic() + DRAIN_SECONDS
                while self.pending and time.monotonic() < deadline:
                    self.create(http, self.pending[0], repeat=True)
                    time.sleep(0.05)
        except Exception as error:  # a bug of this script: reported, fails the run
            import traceback

            self.crash = f"{error!r}\n{traceback.format_exc()}"


# --- checks ----------------------------------------------------------------------------------

EXPECTED = {"create": 201, "list": 200, "get": 200}


def is_json_error(answer: Answer) -> bool:
    """A JSON object naming the error: `{"detail", "code"}` (or field errors for a 400)."""
    if "application/json" not in answer.content_type:
        return False
    try:
        data = json.loads(answer.body)
    except ValueError:
        return False
    if not isinstance(data, dict):
        return False
    return answer.status == 400 or ("detail" in data and "code" in data)


def is_database_unavailable(answer: Answer) -> bool:
    """The outage's answer: 503, code `database_unavailable`, a Retry-After in seconds."""
    if answer.status != 503 or not answer.retry_after.isascii() or not answer.retry_after.isdigit():
        return False
    try:
        return json.loads(answer.body).get("code") == "database_unavailable"
    except (ValueError, AttributeError):
        return False


def looks_like_a_traceback(answer: Answer) -> bool:
    text = answer.body.lower()
    return "traceback" in text or "<html" in text or "<!doctype" in text


@dataclass
class Timeline:
    stop_sent: float = 0.0  # `pg_ctl stop` issued: the outage begins
    down: float = 0.0  # it returned: the cluster is stopped
    start_sent: float = 0.0  # `pg_ctl start` issued
    ready: float = 0.0  # the first connection PostgreSQL accepted
    end: float = 0.0  # the clients were told to stop

    def phase(self, answer: Answer) -> str:
        """before: answered before the outage began; after: sent once PostgreSQL was back;
        outage: the rest (in flight at some moment of the outage)."""
        if answer.finished < self.stop_sent:
            return "before"
        if answer.started >= self.ready:
            return "after"
        return "outage"


@dataclass
class Verdict:
    problems: dict[str, list[str]]
    lost: int = 0
    repeated: int = 0  # creates sent again with their Idempotency-Key

    def add(self, kind: str, description: str) -> None:
        self.problems.setdefault(kind, []).append(description)


def check_answers(
    answers: list[Answer], timeline: Timeline, options: argparse.Namespace, verdict: Verdict
) -> float | None:
    """Checks every answer; answers the recovery time (None: no 2xx after the restart)."""
    first_ok_after: float | None = None
    for answer in answers:
        phase = timeline.phase(answer)
        if answer.status is None:
            verdict.add("transport error (or no answer)", answer.describe())
            continue
        if answer.latency > options.max_latency:
            verdict.add(f"answer slower than {options.max_latency:g} s", answer.describe())
        ok = answer.status == EXPECTED[answer.operation]
        if answer.status >= 500 and answer.status != 503:
            verdict.add(f"{answer.status} answer", answer.describe())
        if not ok and (not is_json_error(answer) or looks_like_a_traceback(answer)):
            verdict.add("error answer that is not a JSON error", answer.describe())
        elif not ok and not is_database_unavailable(answer):
            verdict.add(
                "error answer other than 503 database_unavailable with Retry-After",
                answer.describe(),
            )
        if phase == "before" and not ok:
            verdict.add("unexpected answer before the outage", answer.describe())
        if phase == "after":
            if ok and (first_ok_after is None or answer.finished < first_ok_after):
                first_ok_after = answer.finished
            if not ok and answer.started >= timeline.ready + options.max_recovery:
                verdict.add(
                    f"error more than {options.max_recovery:g} s after PostgreSQL was back",
                    answer.describe(),
                )
    if first_ok_after is None:
        verdict.add("no 2xx answer after PostgreSQL was back", "")
        return None
    recovery = max(0.0, first_ok_after - timeline.ready)
    if recovery > options.max_recovery:
        verdict.add(
            f"recovery slower than {options.max_recovery:g} s",
            f"first 2xx {recovery:.2f} s after PostgreSQL accepted connections",
        )
    return recovery


def check_writes(db_url: str, answers: list[Answer], verdict: Verdict) -> int:
    """Every create answered 201 is stored once, with its data; none is stored twice (its
    repeats with its Idempotency-Key wrote nothing) or stored without a 201 in the end.
    Answers how many records were checked."""
    columns = ", ".join(CHECKED_FIELDS.values())
    with psycopg.connect(db_url, connect_timeout=10) as connection:
        rows = connection.execute(
            f"SELECT id, {columns} FROM integrations_failedintegration"
        ).fetchall()
    by_object: dict[int, list[tuple]] = {}
    for row in rows:
        by_object.setdefault(row[4], []).append(row)
    sent: dict[int, dict[str, Any]] = {}
    acknowledged: dict[int, set[int]] = {}
    for answer in answers:
        if answer.operation != "create" or answer.sent is None:
            continue
        object_id = answer.sent["object_id"]
        sent[object_id] = answer.sent
        if answer.repeat:
            verdict.repeated += 1
        if answer.record is not None:
            acknowledged.setdefault(object_id, set()).add(answer.record["pk"])
    for object_id, body in sent.items():
        stored = by_object.get(object_id, [])
        pks = acknowledged.get(object_id)
        if len(stored) > 1:
            verdict.add("create stored twice", f"object {object_id}: rows {[r[0] for r in stored]}")
        if pks is None:
            if stored:
                verdict.add("stored but never answered 201", f"object {object_id}")
            continue
        if len(pks) > 1:
            verdict.add("one create answered with two records", f"object {object_id}: {pks}")
        row = next((r for r in stored if r[0] in pks), None)
        if row is None:
            verdict.lost += 1
            verdict.add("acknowledged write lost", f"object {object_id}: pk {sorted(pks)}")
            continue
        for position, name in enumerate(CHECKED_FIELDS, start=1):
            if not same_value(name, row[position], body[name]):
                verdict.lost += 1
                verdict.add(
                    "acknowledged write stored differently",
                    f"pk {row[0]}: {name} stored {row[position]!r}, sent {body[name]!r}",
                )
                break
    return len(acknowledged)


# --- report ----------------------------------------------------------------------------------


def server_warnings(service: Service, limit: int = 10) -> list[str]:
    """The service's WARNING and ERROR log lines, without their time stamps, by count."""
    counts: Counter = Counter()
    pattern = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) (.*)$")
    for line in service.log_text().splitlines():
        match = pattern.match(line)
        if match:
            message = re.sub(r"/\d+/", "/<id>/", match.group(2))
            message = re.sub(r"port \d+", "port <port>", message)
            counts[f"{match.group(1)} {message[:200]}"] += 1
    return [f"{count:5d} x {message}" for message, count in counts.most_common(limit)]


def status_label(answer: Answer) -> str:
    if answer.status is None:
        return "transport error"
    if answer.status == 503:
        try:
            code = json.loads(answer.body).get("code")
        except (ValueError, AttributeError):
            code = None
        return f"503 {code}" if code else "503"
    return str(answer.status)


def report(
    options: argparse.Namespace,
    answers: list[Answer],
    timeline: Timeline,
    recovery: float | None,
    checked_writes: int,
    verdict: Verdict,
    machine: list[tuple[str, str]],
    service_notes: list[tuple[str, object]],
    warnings: list[str],
) -> tuple[list[str], list[str], bool]:
    by_phase: dict[str, list[Answer]] = {phase: [] for phase in PHASES}
    for answer in answers:
        by_phase[timeline.phase(answer)].append(answer)
    labels = sorted({status_label(a) for a in answers}, key=lambda s: (s[0].isalpha(), s))
    phase_header = [
        "phase",
        "requests (s since start)",
        "requests",
        *labels,
        "p50 ms",
        "p99 ms",
        "max ms",
    ]
    windows = {
        "before": f"answered by {timeline.stop_sent:.1f}",
        "outage": f"in flight {timeline.stop_sent:.1f}-{timeline.ready:.1f}",
        "after": f"sent {timeline.ready:.1f}-{timeline.end:.1f}",
    }
    phase_rows = []
    for phase in PHASES:
        group = by_phase[phase]
        counts = Counter(status_label(a) for a in group)
        latencies = [a.latency for a in group if a.status is not None]
        phase_rows.append(
            [
                phase,
                windows[phase],
                len(group),
                *[counts.get(label, 0) for label in labels],
                f"{percentile(latencies, 0.5) * 1000:.0f}",
                f"{percentile(latencies, 0.99) * 1000:.0f}",
                f"{max(latencies, default=0) * 1000:.0f}",
            ]
        )
    outage = by_phase["outage"]
    slowest = max(outage, key=lambda a: a.latency, default=None)
    failed = bool(verdict.problems)
    facts = [
        [
            f"PostgreSQL stopped ({STOPS[options.stop_mode][0]}: sent, returned)",
            f"{timeline.stop_sent:.2f} s, {timeline.down:.2f} s",
        ],
        [
            f"PostgreSQL back ({STOPS[options.stop_mode][1]}: sent, first connection)",
            f"{timeline.start_sent:.2f} s, {timeline.ready:.2f} s",
        ],
        [
            "slowest answer during the outage",
            f"{slowest.latency * 1000:.0f} ms ({slowest.method} {slowest.operation}, "
            f"{status_label(slowest)})"
            if slowest
            else "-",
        ],
        [
            "recovery (PostgreSQL accepting connections to the first 2xx)",
            f"{recovery * 1000:.0f} ms" if recovery is not None else "never",
        ],
        ["POSTs answered 201 checked in the database", checked_writes],
        ["lost writes", verdict.lost],
        ["creates sent again with their Idempotency-Key after an error", verdict.repeated],
        *[[label, value] for label, value in service_notes],
        ["verdict", "FAIL" if failed else "PASS"],
    ]
    example = next((a for a in outage if a.status == 503), None)
    problem_lines = []
    for kind, items in verdict.problems.items():
        problem_lines.append(f"{kind}: {len(items)}")
        problem_lines += [f"    {item}" for item in items[:5] if item]
    width = max(len(str(label)) for label, _ in facts)
    text = [
        *text_table(phase_header, phase_rows),
        "",
        *[f"{label:<{width}}  {value}" for label, value in facts],
    ]
    if example:
        text += ["", f"An answer during the outage: {example.status} {example.body[:300]}"]
    if warnings:
        text += ["", "Server log, warnings and errors by count:", *warnings]
    if problem_lines:
        text += ["", "Problems:", *problem_lines]

    command = "bench/pg_restart" + (" " + shlex.join(options.argv) if options.argv else "")
    md = [
        "# PostgreSQL restarted under load",
        "",
        f"The service (`manage.py serve`, production settings, gunicorn `--workers "
        f"{options.workers}`) on a private PostgreSQL cluster, {options.clients} clients writing "
        "(POST) and reading (GET list, GET record) without pause; PostgreSQL is stopped "
        f"({STOPS[options.stop_mode][0]}) after {options.before:g} s, back "
        f"{options.outage:g} s later, and the load goes on for {options.after:g} s"
        + (
            f" (the service's {', '.join(f'{k}={v}' for k, v in FREEZE_TIMEOUTS.items())})"
            if options.stop_mode == "freeze"
            else ""
        )
        + ". A create not "
        "answered 201 is sent again with its `Idempotency-Key` until it is. Promises: during the "
        "outage only 503 `database_unavailable` with `Retry-After`, each within "
        f"{options.max_latency:g} s; 2xx again within {options.max_recovery:g} s of PostgreSQL "
        "being back, without restarting the service; every create stored exactly once, with "
        "its data, and none stored without its 201. See the docstring of `bench/pg_restart.py`.",
        "",
        f"Command: `{command}`",
        "",
        f"Run: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}; verdict "
        f"**{'FAIL' if failed else 'PASS'}**.",
        "",
        "## Machine",
        "",
        *markdown_table(["", ""], [[k, v] for k, v in machine]),
        "",
        "## Answers by phase",
        "",
        "Phases: *before*, answered before the stop was sent; *outage*, in flight at some "
        "moment between then and PostgreSQL accepting connections again; *after*, sent after "
        "that (seconds since the load began). `503 database_unavailable` is the answer's "
        "`code`.",
        "",
        *markdown_table(phase_header, phase_rows),
        "",
        "## Outage and recovery",
        "",
        *markdown_table(["", ""], facts),
    ]
    if example:
        md += [
            "",
            "An answer during the outage:",
            "",
            "```text",
            f"{example.status} {example.body[:300]}",
            "```",
        ]
    if warnings:
        md += ["", "The server's log, warnings and errors by count:", "", "```text", *warnings]
        md.append("```")
    if problem_lines:
        md += ["", "## Problems", "", "```text", *problem_lines, "```"]
    md.append("")
    return text, md, failed


# --- main ------------------------------------------------------------------------------------


REPORTS = {"fast": "RESTART.md", "immediate": "RESTART_CRASH.md", "freeze": "RESTART_FREEZE.md"}
# What the outage is, and its end, as the report says them.
STOPS = {
    "fast": ("`pg_ctl stop -m fast`", "`pg_ctl start`"),
    "immediate": ("`pg_ctl stop -m immediate`", "`pg_ctl start`"),
    "freeze": ("the proxy stops forwarding", "the proxy forwards again"),
}
FREEZE_TIMEOUTS = {"DB_ANSWER_TIMEOUT": "2", "DB_CONNECT_TIMEOUT": "2"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/pg_restart",
        description="PostgreSQL (a private cluster) restarted under load: JSON 503s during the "
        "outage, recovery without a restart, no acknowledged write lost.",
    )
    parser.add_argument("--clients", type=int, default=4, help="client threads (4)")
    parser.add_argument("--before", type=float, default=10, help="seconds before the stop (10)")
    parser.add_argument("--outage", type=float, default=10, help="seconds of outage (10)")
    parser.add_argument("--after", type=float, default=15, help="seconds after the start (15)")
    parser.add_argument(
        "--max-latency", type=float, default=5, help="the slowest answer allowed, seconds (5)"
    )
    parser.add_argument(
        "--max-recovery",
        type=float,
        default=10,
        help="seconds from PostgreSQL being back to the first 2xx (10)",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument(
        "--stop-mode",
        choices=("fast", "immediate", "freeze"),
        default="fast",
        help="pg_ctl stop -m: fast (a clean shutdown, connections refused at once) or "
        "immediate (a crash: no checkpoint, recovery from the WAL at the start); freeze: "
        "PostgreSQL runs on, but the proxy between it and the service stops forwarding "
        "(nothing answered, nothing refused)",
    )
    parser.add_argument(
        "--pg-bin",
        help="PostgreSQL's server binaries (default: the newest /usr/lib/postgresql/*/bin)",
    )
    parser.add_argument(
        "--output",
        help="the report (bench/RESTART.md; with --stop-mode immediate, bench/RESTART_CRASH.md)",
    )
    options = parser.parse_args(argv)
    if options.output is None:
        name = REPORTS[options.stop_mode]
        options.output = str(ROOT / "bench" / name)
    for name in ("before", "outage", "after"):
        if not 1 <= getattr(options, name) <= 600:
            parser.error(f"--{name} must be from 1 to 600 seconds")
    if not 1 <= options.clients <= 32:
        parser.error("--clients must be from 1 to 32")
    options.argv = argv
    return options


def sleep_until(moment: float, origin: float, service: Service) -> None:
    while time.monotonic() - origin < moment:
        if service.process.poll() is not None:
            raise Failure(f"the service stopped during the run:\n{service.log_tail()}")
        time.sleep(0.05)


def main(argv: list[str]) -> int:
    options = parse_args(argv)
    exit_on_sigterm()
    pidfile = PidFile(os.environ.get("FI_PIDFILE"))
    workdir = Path(tempfile.mkdtemp(prefix="fi-pg-restart."))
    pidfile.add("tempdir", workdir)
    service: Service | None = None
    cluster: Cluster | None = None
    clients: list[Client] = []
    proxy: FreezingProxy | None = None
    stop = threading.Event()
    try:
        bindir = find_pg_bin(options.pg_bin)
        cluster = Cluster(bindir, workdir, pidfile)
        log(f"== A private PostgreSQL cluster ({bindir}) on 127.0.0.1:{cluster.port}")
        cluster.init()
        cluster.start()
        with psycopg.connect(cluster.url("postgres"), autocommit=True) as connection:
            connection.execute("CREATE DATABASE fi_restart")
        db_url = cluster.url("fi_restart")
        service_url = db_url
        if options.stop_mode == "freeze":
            proxy = FreezingProxy(cluster.port)
            service_url = db_url.replace(f":{cluster.port}/", f":{proxy.port}/")
            log(f"   the service reaches it through a proxy on 127.0.0.1:{proxy.port}")
        env = service_env(service_url, workdir / "service-data")
        if proxy is not None:
            env.update(FREEZE_TIMEOUTS)
        setup = set_up_service_data(env, "restart")
        log(f"== Starting the service (gunicorn, {options.workers} workers)")
        service = Service(env, workdir / "server.log", pidfile, workers=options.workers)
        service.wait_healthy()
        master = service.process.pid
        product = content_type_id(service.base_url, setup.key, "products", "product")
        boots_before = service.log_text().count("Booting worker")

        origin = time.monotonic()
        timeline = Timeline()
        clients = [
            Client(
                i,
                base_url=service.base_url,
                key=setup.key,
                channel_id=setup.channel_id,
                content_type=product,
                origin=origin,
                timeout=options.max_latency + 10,
                stop=stop,
            )
            for i in range(options.clients)
        ]
        log(
            f"== Load: {options.clients} clients; PostgreSQL stopped at {options.before:g} s, "
            f"started {options.outage:g} s later, {options.after:g} s more"
        )
        for client in clients:
            client.start()
        sleep_until(options.before, origin, service)
        timeline.stop_sent = time.monotonic() - origin
        if proxy is not None:
            proxy.freeze()
        else:
            cluster.stop(options.stop_mode)
        timeline.down = time.monotonic() - origin
        took = timeline.down - timeline.stop_sent
        log(f"   {timeline.stop_sent:5.1f} s: {STOPS[options.stop_mode][0]} (in {took:.2f} s)")
        sleep_until(options.before + options.outage, origin, service)
        timeline.start_sent = time.monotonic() - origin
        if proxy is not None:
            proxy.thaw()
        else:
            starter = subprocess.Popen(
                cluster.start_command(),
                cwd=workdir,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            cluster.running = True
            deadline = time.monotonic() + 60
            while not cluster.accepts_connections():
                if time.monotonic() > deadline:
                    raise Failure(f"PostgreSQL did not start again:\n{cluster.log_tail()}")
                time.sleep(0.02)
            starter.wait(timeout=60)
        timeline.ready = time.monotonic() - origin
        log(f"   {timeline.ready:5.1f} s: PostgreSQL accepts connections again")
        sleep_until(timeline.ready + options.after, origin, service)
        timeline.end = time.monotonic() - origin
        stop.set()
        for client in clients:
            client.join(timeout=options.max_latency + 20)
            if client.is_alive():
                raise Failure(f"{client.name} is still waiting for an answer")
            if client.crash:
                raise Failure(f"{client.name} crashed:\n{client.crash}")
        log(f"   {timeline.end:5.1f} s: load stopped")

        answers = sorted((a for c in clients for a in c.answers), key=lambda a: a.started)
        verdict = Verdict({})
        recovery = check_answers(answers, timeline, options, verdict)
        checked_writes = check_writes(db_url, answers, verdict)
        stayed_up = service.process.poll() is None and service.process.pid == master
        if not stayed_up:
            verdict.add("the service did not stay up", service.log_tail())
        tracebacks = service.traceback_count()
        service_notes: list[tuple[str, object]] = [
            ("service up throughout, never restarted", "yes" if stayed_up else "NO"),
            (
                "gunicorn workers re-booted by gunicorn",
                service.log_text().count("Booting worker") - boots_before,
            ),
            ("tracebacks in the server's output", tracebacks),
        ]
        if tracebacks:
            verdict.add("traceback in the server's output", "\n".join(service.tracebacks()))
        machine = [
            *machine_description(db_url),
            ("service", f"manage.py serve, gunicorn --workers {options.workers}, 127.0.0.1"),
            ("database", "a private cluster (initdb --auth=trust), 127.0.0.1, defaults"),
        ]
        text, md, failed = report(
            options,
            answers,
            timeline,
            recovery,
            checked_writes,
            verdict,
            machine,
            service_notes,
            server_warnings(service),
        )
        log("")
        for line in text:
            log(line)
        Path(options.output).write_text("\n".join(md))
        log(f"\nVerdict: {'FAIL' if failed else 'PASS'}")
        log(f"Written to {os.path.relpath(options.output, ROOT)}")
        return 1 if failed else 0
    except Failure as error:
        log(f"\nFAILED: {error}")
        if service is not None:
            log(f"Server output (last lines):\n{service.log_tail()}")
        return 1
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=options.max_latency + 20)
        if service is not None:
            service.stop()
        if proxy is not None:
            proxy.close()
        if cluster is not None:
            cluster.destroy()
        shutil.rmtree(workdir, ignore_errors=True)
        pidfile.discard("tempdir", workdir)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
