"""bench/run: load benchmark of the failed-integrations API against two reference peers.

Started by bench/run (which installs wrk and the Python packages first); see bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import random
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from . import database

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WRK_DIR = Path("bench") / "wrk"  # relative: wrk runs in ROOT
PYTHON = sys.executable
BULK_RECORDS = 1000
# Object ids of the records the write scenarios report: far above the seeded ones (at most
# 5,000,000), a range of its own for each wrk run and for the preflight.
OBJECT_IDS_PER_RUN = 10_000_000_000
PREFLIGHT_OBJECT_IDS = 9_000_000_000
USAGE_EXAMPLE = "bench/run --rows 200000 --duration 5 --repeat 1"


def log(message: str = "") -> None:
    print(message, flush=True)


class BenchError(Exception):
    """A failure that stops the run with a message (and no traceback)."""


# --- peers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    name: str
    app: str  # the WSGI application gunicorn serves
    token: str  # which key it takes: "ours" (the service's tokens) or "obvious" (DRF authtoken)
    description: str


PEERS = (
    Peer("ours", "config.wsgi:application", "ours", "the service (config.wsgi)"),
    Peer(
        "obvious",
        "bench.obvious.wsgi:application",
        "obvious",
        "stock DRF: ModelViewSet, ModelSerializer, authtoken",
    ),
    Peer("floor", "bench.floor:application", "ours", "bare WSGI + psycopg, one SQL per request"),
)


# --- scenarios -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    method: str
    write: bool  # adds records (taken back when the peer's server has stopped)
    records: int  # records written per request (0 for a read)
    description: str


SCENARIOS = (
    Scenario("retrieve", "GET", False, 0, "GET one record, going round 1000 existing ids"),
    Scenario("list10", "GET", False, 0, "GET a list page, limit=10"),
    Scenario(
        "list100_filtered",
        "GET",
        False,
        0,
        "GET a list page, limit=100&reason_type=remote&is_active=true",
    ),
    Scenario("deep_page", "GET", False, 0, "GET a list page in the middle of the channel"),
    Scenario("patch", "PATCH", False, 0, "PATCH retry_count of existing records (round 1000 ids)"),
    Scenario("create", "POST", True, 1, "POST one record"),
    Scenario("bulk1000", "POST", True, BULK_RECORDS, "POST an array of 1000 records to bulk/"),
)
# Records added by `create` and `bulk1000` are deleted once the peer's server has stopped (a
# server goes on with the requests it has taken after wrk has gone), before the next peer.
SCENARIO_NAMES = [s.name for s in SCENARIOS]


@dataclass
class Plan:
    """Everything the scenarios address, written to files that the wrk scripts read."""

    fixture: database.Fixture
    workdir: Path
    keys: dict[str, str]
    # The service's model defaults of the failed integrations' columns (for the floor).
    insert_defaults: dict[str, object] = field(default_factory=dict)
    runs: int = 0  # write runs so far: each gets its own range of object ids

    @property
    def base(self) -> str:
        return f"/api/v1/channel/{self.fixture.channel_id}/failed_integrations/"

    @property
    def deep_page(self) -> int:
        pages = max(1, -(-self.fixture.channel_rows // 10))
        return max(1, pages // 2)

    def path(self, scenario: Scenario) -> str:
        """The path of the scenario's first request (the one the preflight sends)."""
        first_id = self.fixture.ids[0]
        return {
            "retrieve": f"{self.base}{first_id}/",
            "list10": f"{self.base}?limit=10",
            "list100_filtered": f"{self.base}?limit=100&reason_type=remote&is_active=true",
            "deep_page": f"{self.base}?limit=10&page={self.deep_page}",
            "create": self.base,
            "patch": f"{self.base}{first_id}/",
            "bulk1000": f"{self.base}bulk/",
        }[scenario.name]

    def body(self, scenario: Scenario) -> bytes | None:
        """The body of the preflight's request (object ids of their own)."""
        if scenario.name == "create":
            template = (self.workdir / "create.template").read_text()
            return template.replace("%d", str(PREFLIGHT_OBJECT_IDS)).encode()
        if scenario.name == "patch":
            return b'{"retry_count": 1}'
        if scenario.name == "bulk1000":
            template = (self.workdir / "bulk.template").read_text()
            return re.sub(
                r"@(\d+)@", lambda m: str(PREFLIGHT_OBJECT_IDS + 1 + int(m[1])), template
            ).encode()
        return None

    def wrk_script(self, scenario: Scenario, key: str) -> tuple[str, list[str]]:
        """The wrk script and its arguments. The writes get the object ids of a range of
        their own for each wrk run, so that no record is of an object already reported."""
        ids = str(self.workdir / "ids.txt")
        if scenario.name == "retrieve":
            return "get_ids.lua", [key, self.base, ids]
        if scenario.name == "patch":
            return "patch.lua", [key, self.base, ids]
        if scenario.name in ("create", "bulk1000"):
            self.runs += 1
            base = str(self.runs * OBJECT_IDS_PER_RUN)
            if scenario.name == "create":
                return "create.lua", [key, self.base, str(self.workdir / "create.template"), base]
            template = str(self.workdir / "bulk.template")
            return "bulk.lua", [key, self.path(scenario), template, base]
        return "get.lua", [key, self.path(scenario)]


def write_inputs(fixture: database.Fixture, workdir: Path) -> None:
    (workdir / "ids.txt").write_text("".join(f"{i}\n" for i in fixture.ids))
    create = (
        '{"version_date": "2025-06-27T08:38:26.936Z", "reason_type": "remote", '
        f'"content_type": {fixture.product_type_id}, "object_id": %d, '
        '"max_retry_count": 5, "retry_interval": 300}'
    )
    (workdir / "create.template").write_text(create)
    rng = random.Random(database.SEED)
    now = dt.datetime.now(dt.UTC)
    records = []
    for n in range(BULK_RECORDS):
        record = {
            "version_date": (now - dt.timedelta(seconds=rng.randint(0, 86400)))
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "reason_type": rng.choices(["mapping", "remote", "channel_app"], [2, 6, 2])[0],
            "content_type": rng.choice(fixture.content_type_ids),
            "object_id": f"@{n}@",
            "retry_count": rng.randint(0, 5),
            "max_retry_count": rng.randint(1, 5),
            "retry_interval": rng.randint(0, 3600),
        }
        if rng.random() < 0.5:
            record["log_id"] = rng.randint(1, 2_000_000_000)
        records.append(record)
    # Object ids are filled per request (wrk/bulk.lua): "@n@" becomes a number.
    (workdir / "bulk.template").write_text(re.sub(r'"(@\d+@)"', r"\1", json.dumps(records)))


# --- servers ---------------------------------------------------------------------------------


class PidFile:
    """The process groups of the servers running now, for bench/run's trap (if this process
    is killed outright, the trap stops them)."""

    def __init__(self, path: str | None):
        self.path = Path(path) if path else None
        self.groups: set[int] = set()

    def _write(self) -> None:
        if self.path:
            self.path.write_text("".join(f"{g}\n" for g in sorted(self.groups)))

    def add(self, group: int) -> None:
        self.groups.add(group)
        self._write()

    def discard(self, group: int) -> None:
        self.groups.discard(group)
        self._write()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    peer: Peer
    port: int
    process: subprocess.Popen
    log_path: Path
    pidfile: PidFile

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self.pidfile.discard(self.process.pid)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def django_env(db_url: str, workdir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_SETTINGS_MODULE", "DJANGO_ENV", "BENCH_PIDFILE"}
    }
    env.update(
        DATABASE_URL=db_url,
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DATA_DIR=str(workdir / "data"),
        PYTHONPATH=str(ROOT),
        LOG_LEVEL="WARNING",
    )
    return env


def peer_env(peer: Peer, db_url: str, workdir: Path, plan: Plan) -> dict[str, str]:
    env = django_env(db_url, workdir)
    if peer.name == "ours":
        env.update(
            DJANGO_ENV="production",
            DJANGO_SETTINGS_MODULE="config.settings",
            SECURE_SSL_REDIRECT="false",
        )
    elif peer.name == "obvious":
        env.update(DJANGO_SETTINGS_MODULE="bench.obvious.settings")
    else:
        env.update(FLOOR_INSERT_DEFAULTS=json.dumps(plan.insert_defaults))
    return env


def start_server(
    peer: Peer, *, workers: int, db_url: str, plan: Plan, pidfile: PidFile, probe: str, key: str
) -> Server:
    workdir = plan.workdir
    port = free_port()
    log_path = workdir / f"{peer.name}.log"
    command = [
        PYTHON,
        "-m",
        "gunicorn",
        "--worker-class",
        "sync",
        "--workers",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
        "--timeout",
        "120",
        "--graceful-timeout",
        "10",
        "--log-level",
        "warning",
        "--chdir",
        str(ROOT),
        peer.app,
    ]
    with log_path.open("ab") as output:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=peer_env(peer, db_url, workdir, plan),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pidfile.add(process.pid)
    server = Server(peer, port, process, log_path, pidfile)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            server.stop()
            raise BenchError(f"{peer.name} did not start:\n{server.log_tail()}")
        with contextlib.suppress(OSError):
            status, _ = http_request(port, "GET", probe, key, timeout=5)
            if status:
                return server
        time.sleep(0.2)
    server.stop()
    raise BenchError(f"{peer.name} did not answer on port {port} within 60 s:\n{server.log_tail()}")


def http_request(
    port: int, method: str, path: str, key: str, body: bytes | None = None, timeout: float = 60
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Authorization": f"Token {key}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# --- wrk -------------------------------------------------------------------------------------


@dataclass
class Run:
    requests: int
    duration_s: float
    non2xx: int
    socket_errors: int
    timeouts: int
    p50_ms: float
    p99_ms: float
    sample_error: str = ""
    # Write scenarios: records created while wrk ran, counted in the database (see README).
    records_per_s: float | None = None

    @property
    def ok_per_s(self) -> float:
        """2xx answers per second: errors are not throughput."""
        return max(0, self.requests - self.non2xx) / self.duration_s if self.duration_s else 0.0

    @property
    def rate(self) -> float:
        """What the run is ranked and compared by: records/s for writes, else req/s."""
        return self.ok_per_s if self.records_per_s is None else self.records_per_s


def run_wrk(
    port: int, script: str, args: list[str], *, threads: int, connections: int, duration: float
) -> Run:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration:g}s",
        "--timeout",
        "60s",
        "-s",
        str(WRK_DIR / script),
        f"http://127.0.0.1:{port}",
        "--",
        *args,
    ]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=duration + 180, check=False
    )
    values: dict[str, int] = {}
    sample = ""
    for line in result.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            values = {k: int(v) for k, v in (item.split("=") for item in line.split()[1:])}
        elif line.startswith("BENCH_SAMPLE_ERROR "):
            sample = line.removeprefix("BENCH_SAMPLE_ERROR ")
    if result.returncode != 0 or not values:
        raise BenchError(
            f"wrk failed ({result.returncode}): {shlex.join(command)}\n{result.stdout}"
            f"{result.stderr}"
        )
    return Run(
        requests=values["requests"],
        duration_s=values["duration_us"] / 1e6,
        non2xx=values["non2xx"],
        socket_errors=values["connect"] + values["read"] + values["write"],
        timeouts=values["timeout"],
        p50_ms=values["p50_us"] / 1000,
        p99_ms=values["p99_us"] / 1000,
        sample_error=sample,
    )


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    runs: list[Run] = field(default_factory=list)
    unsupported: str = ""  # why the peer does not take part ("n/a")
    warnings: list[str] = field(default_factory=list)

    @property
    def median(self) -> Run | None:
        if not self.runs:
            return None
        ordered = sorted(self.runs, key=lambda r: r.rate)
        return ordered[(len(ordered) - 1) // 2]


EXPECTED = {"GET": 200, "PATCH": 200, "POST": 201}


def preflight(server: Server, plan: Plan, scenario: Scenario, key: str) -> tuple[str, str]:
    """Sends the scenario's request once. Answers ("ok"|"n/a"|"warn", message); raises
    BenchError when a read answers anything but 200, with the body."""
    path = plan.path(scenario)
    status, body = http_request(server.port, scenario.method, path, key, plan.body(scenario))
    expected = EXPECTED[scenario.method]
    text = body[:600].decode(errors="replace")
    if status == expected:
        return "ok", check_shape(scenario, plan, body)
    if server.peer.name == "ours" and scenario.name == "bulk1000" and status in (404, 405):
        return "n/a", f"{scenario.method} {path} answers {status} (no bulk endpoint)"
    message = (
        f"{server.peer.name} {scenario.method} {path} answered {status}, not {expected}: {text}"
    )
    if not scenario.write and scenario.method == "GET":
        raise BenchError(
            f"{message}\n(if the service changed while the benchmark ran, e.g. a new migration, "
            "run it again)"
        )
    return "warn", message


def check_shape(scenario: Scenario, plan: Plan, body: bytes) -> str:
    """Notes (not failures) about what an answer holds, e.g. a filter that is not applied."""
    if scenario.name != "list100_filtered":
        return ""
    data = json.loads(body)
    results = data.get("results", [])
    unfiltered = [
        r for r in results if r.get("reason_type") != "remote" or r.get("is_active") is not True
    ]
    if unfiltered:
        return f"ignores reason_type/is_active ({len(unfiltered)} of {len(results)} do not match)"
    return ""


def same_record(answers: dict[str, dict]) -> list[str]:
    """Differences between the peers' answers for one record (the fields each peer has)."""
    notes = []
    reference = answers.get("ours")
    if not reference:
        return notes
    for name, answer in answers.items():
        if name == "ours":
            continue
        missing = sorted(set(reference) - set(answer))
        if missing:
            notes.append(f"{name} leaves out {', '.join(missing)}")
        changing = {"retry_count", "modified_date"}  # changed by the patch scenario
        differing = sorted(
            k for k in answer if k in reference and k not in changing and reference[k] != answer[k]
        )
        if differing:
            notes.append(
                f"{name} answers the record differently from ours in "
                + ", ".join(f"{k} ({answer[k]!r} vs {reference[k]!r})" for k in differing)
            )
    return notes


@dataclass
class WriteWindow:
    """The ids a write run was given: those above `after` up to `upto` (the id sequence)."""

    run: Run
    after: int
    upto: int
    seconds: float


def bench_peer(
    server: Server,
    plan: Plan,
    scenarios: list[Scenario],
    outcomes: dict[tuple[str, str], Outcome],
    options: argparse.Namespace,
    first_round: bool,
    record_answers: dict[str, dict],
) -> list[WriteWindow]:
    """Runs the scenarios on one peer's server; answers the windows of its write runs, whose
    records are counted once the server has stopped (and finished what it had taken)."""
    windows: list[WriteWindow] = []
    db_url = plan_db_url(options)
    peer = server.peer
    key = plan.keys[peer.token]
    if not first_round:
        # The reads again, each round: a service that changed under the run fails it loudly.
        for scenario in scenarios:
            outcome = outcomes[(scenario.name, peer.name)]
            if not scenario.write and not outcome.unsupported:
                preflight(server, plan, scenario, key)
    if first_round:
        # Every scenario's request once, before any load: a read that fails stops the run now.
        for scenario in scenarios:
            outcome = outcomes[(scenario.name, peer.name)]
            verdict, message = preflight(server, plan, scenario, key)
            if verdict == "n/a":
                outcome.unsupported = message
                log(f"   {scenario.name:<17} n/a: {message}")
            elif message:
                outcome.warnings.append(message)
                log(f"   {scenario.name:<17} note: {message}")
            if scenario.name == "retrieve":
                _, body = http_request(server.port, "GET", plan.path(scenario), key)
                record_answers[peer.name] = json.loads(body)
        if any(scenario.write for scenario in scenarios):
            database.take_back_writes(db_url, options.rows)  # the preflight's records
    for scenario in scenarios:
        outcome = outcomes[(scenario.name, peer.name)]
        if outcome.unsupported:
            continue
        script, args = plan.wrk_script(scenario, key)
        if options.warmup > 0:
            run_wrk(
                server.port,
                script,
                args,
                threads=options.threads,
                connections=options.connections,
                duration=options.warmup,
            )
        if scenario.write:
            after, started = database.last_id(db_url), time.monotonic()
        run = run_wrk(
            server.port,
            script,
            args,
            threads=options.threads,
            connections=options.connections,
            duration=options.duration,
        )
        if scenario.write:
            upto = database.last_id(db_url)
            windows.append(WriteWindow(run, after, upto, time.monotonic() - started))
        outcome.runs.append(run)
        flag = ""
        if run.non2xx or run.socket_errors or run.timeouts:
            flag = f"  non-2xx {run.non2xx}, socket errors {run.socket_errors}, "
            flag += f"timeouts {run.timeouts}"
            if run.sample_error:
                flag += f"  e.g. {run.sample_error[:200]}"
        log(
            f"   {scenario.name:<17} {run.ok_per_s:9.1f} req/s  p50 {run.p50_ms:7.1f} ms  "
            f"p99 {run.p99_ms:7.1f} ms{flag}"
        )
    return windows


def count_writes(db_url: str, windows: list[WriteWindow]) -> None:
    for window in windows:
        created = database.count_ids(db_url, window.after, window.upto)
        window.run.records_per_s = created / window.seconds if window.seconds else 0.0


def plan_db_url(options: argparse.Namespace) -> str:
    return database.database_url(options.postgres, options.database)


# --- report ----------------------------------------------------------------------------------


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def fmt_ratio(numerator: Run | None, denominator: Run | None) -> str:
    if numerator is None or denominator is None or not denominator.rate:
        return "n/a"
    return f"{numerator.rate / denominator.rate:.2f}x"


def results_table(
    scenarios: list[Scenario], peers: list[Peer], outcomes: dict[tuple[str, str], Outcome]
) -> str:
    header = [
        "scenario",
        "peer",
        "req/s",
        "records/s",
        "p50 ms",
        "p99 ms",
        "non-2xx",
        "ours/obvious",
        "ours/floor",
        "bulk vs create",
    ]
    numeric = {2, 3, 4, 5, 7, 8, 9}
    names = [p.name for p in peers]
    rows: list[list[str]] = []
    for scenario in scenarios:
        medians = {n: outcomes[(scenario.name, n)].median for n in names}
        for index, peer in enumerate(peers):
            run = medians[peer.name]
            row = [scenario.name if index == 0 else "", peer.name]
            if run is None:
                row += ["n/a", "", "", "", ""]
            else:
                completed = run.requests > 0
                errors = str(run.non2xx)
                if run.socket_errors + run.timeouts:
                    errors += f" (+{run.socket_errors + run.timeouts} socket errors/timeouts)"
                row += [
                    fmt_rate(run.ok_per_s),
                    fmt_rate(run.records_per_s) if run.records_per_s is not None else "",
                    f"{run.p50_ms:.1f}" if completed else "-",
                    f"{run.p99_ms:.1f}" if completed else "-",
                    errors,
                ]
            if index == 0 and "ours" in names:
                row.append(fmt_ratio(medians["ours"], medians.get("obvious")))
                row.append(fmt_ratio(medians["ours"], medians.get("floor")))
            else:
                row += ["", ""]
            row.append(bulk_vs_create(scenario, peer, outcomes))
            rows.append(row)
    for row in rows:
        if "obvious" not in names:
            row[7] = ""
        if "floor" not in names:
            row[8] = ""
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.rjust(w) if i in numeric else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    separator = "|" + "|".join(
        "-" * (w + 1) + ":" if i in numeric else "-" * (w + 2) for i, w in enumerate(widths)
    )
    return "\n".join([line(header), separator + "|", *(line(r) for r in rows)])


def bulk_vs_create(scenario: Scenario, peer: Peer, outcomes: dict[tuple[str, str], Outcome]) -> str:
    """On a bulk row: the peer's records/s in bulk over its records/s one by one (create)."""
    if scenario.name != "bulk1000":
        return ""
    bulk = outcomes[(scenario.name, peer.name)].median
    create = outcomes.get(("create", peer.name))
    create_run = create.median if create else None
    if bulk is None or create_run is None or not create_run.rate:
        return "n/a"
    return f"{bulk.rate / create_run.rate:.1f}x"


def command_output(command: list[str]) -> str:
    try:
        return subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=20
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine_description(options: argparse.Namespace, plan: Plan) -> list[tuple[str, str]]:
    cpu = ""
    for line in command_output(["lscpu"]).splitlines():
        if line.startswith("Model name:"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    versions = command_output(
        [
            PYTHON,
            "-c",
            "import django, rest_framework, gunicorn, psycopg; "
            "print(django.get_version(), rest_framework.VERSION, gunicorn.__version__, "
            "psycopg.__version__)",
        ]
    ).split()
    django_v, drf_v, gunicorn_v, psycopg_v = (versions + ["?"] * 4)[:4]
    wrk_version = command_output(["wrk", "--version"]).splitlines()
    fixture = plan.fixture
    return [
        ("CPU", f"{cpu or platform.processor() or '?'} x {command_output(['nproc'])}"),
        ("memory", memory or "?"),
        ("kernel", f"{platform.system()} {platform.release()}"),
        ("PostgreSQL", database.server_version(options.postgres).split(" on ")[0]),
        ("Python", platform.python_version()),
        ("Django / DRF", f"{django_v} / {drf_v}"),
        ("psycopg", psycopg_v),
        (
            "app server",
            f"gunicorn {gunicorn_v}, sync workers, --workers {options.workers}, 127.0.0.1",
        ),
        (
            "load",
            f"{(wrk_version[0].split(' Copyright')[0] if wrk_version else 'wrk')}: "
            f"-t{options.threads} -c{options.connections} -d{options.duration:g}s, "
            f"{options.warmup:g} s warm-up discarded, median of {options.repeat} run(s)",
        ),
        (
            "data",
            f"{options.rows:,} failed integrations over {options.channels} channels; "
            f"scenarios on channel {fixture.channel_id} ({fixture.channel_rows:,} rows, the "
            f"median channel); deep_page asks for page {plan.deep_page} with limit=10",
        ),
        ("date", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
    ]


def write_results(
    path: Path,
    command: str,
    table: str,
    machine: list[tuple[str, str]],
    scenarios: list[Scenario],
    peers: list[Peer],
    outcomes: dict[tuple[str, str], Outcome],
    notes: list[str],
) -> None:
    lines = [
        "# Benchmark results",
        "",
        "Produced by:",
        "",
        "```sh",
        command,
        "```",
        "",
        "See [README.md](README.md) for what the peers and scenarios are and how to read "
        "the ratios. `req/s` counts 2xx answers only; `records/s` (writes) counts the records "
        "created in the database while wrk ran. Each row is the median run of its scenario "
        "and peer (by records/s for writes, else by req/s), with wrk's p50/p99 latency of that "
        "run. Ratios are ours' rate over the other peer's (above 1: ours is faster); `bulk vs "
        "create` is a peer's records/s in bulk over its records/s one by one.",
        "",
        table,
        "",
        "## Machine",
        "",
        *(f"- **{name}**: {value}" for name, value in machine),
        "",
        "## Scenarios",
        "",
        *(f"- `{s.name}`: {s.description}" for s in scenarios),
        "",
        "## Peers",
        "",
        *(f"- `{p.name}`: {p.description}" for p in peers),
    ]
    if notes:
        lines += ["", "## Notes", "", *(f"- {note}" for note in notes)]
    lines += [
        "",
        "## Every run",
        "",
        "req/s (2xx answers) of each run, records/s for create and bulk1000, in order:",
        "",
    ]
    for scenario in scenarios:
        for peer in peers:
            outcome = outcomes[(scenario.name, peer.name)]
            runs = ", ".join(fmt_rate(r.rate) for r in outcome.runs) or "n/a"
            lines.append(f"- {scenario.name} / {peer.name}: {runs}")
    path.write_text("\n".join(lines) + "\n")


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run",
        description=(
            "Load benchmark of the failed-integrations API: the service ('ours'), the obvious "
            "DRF implementation and a raw WSGI floor, one at a time under gunicorn, driven by "
            "wrk, on a PostgreSQL database of the benchmark's own."
        ),
        epilog=f"A quick run: {USAGE_EXAMPLE}. See bench/README.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="failed integrations")
    parser.add_argument("--channels", type=int, default=50, help="channels they are spread over")
    parser.add_argument("--database", default="fi_bench", help="the benchmark's database")
    parser.add_argument(
        "--postgres",
        default="postgres://postgres@127.0.0.1:5432",
        help="the PostgreSQL server (a user that may create databases)",
    )
    parser.add_argument("--reseed", action="store_true", help="seed even if the data is there")
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers of each peer")
    parser.add_argument("--duration", type=float, default=10, help="seconds of each wrk run")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of the discarded run")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario (the median)")
    parser.add_argument(
        "--peers",
        default=",".join(p.name for p in PEERS),
        help="comma-separated subset of: " + ", ".join(p.name for p in PEERS),
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIO_NAMES),
        help="comma-separated subset of: " + ", ".join(SCENARIO_NAMES),
    )
    parser.add_argument(
        "--results",
        default="bench/RESULTS.md",
        help="where to write the results (relative to the repository)",
    )
    options = parser.parse_args(argv)
    for name in ("rows", "channels", "workers", "connections", "threads", "repeat"):
        if getattr(options, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if options.duration <= 0 or options.warmup < 0:
        parser.error("--duration must be above 0 and --warmup at least 0")
    if options.threads > options.connections:
        parser.error("--threads must not exceed --connections")
    if options.channels > options.rows:
        parser.error("--channels must not exceed --rows")
    known = {p.name for p in PEERS}
    options.peer_list = [p for p in PEERS if p.name in options.peers.split(",")]
    unknown = set(options.peers.split(",")) - known
    if unknown or not options.peer_list:
        parser.error(f"unknown peers: {', '.join(sorted(unknown)) or '(none given)'}")
    wanted = options.scenarios.split(",")
    unknown = set(wanted) - set(SCENARIO_NAMES)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    options.scenario_list = [s for s in SCENARIOS if s.name in wanted]
    return options


def manage(args: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(
        [PYTHON, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise BenchError(f"{shlex.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def prepare(options: argparse.Namespace, workdir: Path) -> Plan:
    db_url = plan_db_url(options)
    log(f"== Database {options.database} on {options.postgres}")
    created = database.ensure_database(options.postgres, options.database)
    log("   created" if created else "   exists (created by an earlier bench/run)")

    env = django_env(db_url, workdir)
    log("== Migrations (the service's, then DRF authtoken's for the obvious peer)")
    manage(["manage.py", "migrate", "--noinput", "-v", "0"], env)
    manage(
        ["-m", "django", "migrate", "authtoken", "--noinput", "-v", "0"],
        {**env, "DJANGO_SETTINGS_MODULE": "bench.obvious.settings"},
    )

    with psycopg.connect(db_url) as connection:
        state = database.current_state(connection)
    wanted = database.SeedState(rows=options.rows, channels=options.channels)
    defaults = json.loads(
        manage(
            ["-m", "bench.auth", "defaults"], {**env, "DJANGO_SETTINGS_MODULE": "config.settings"}
        )
    )
    if options.reseed or state != wanted:
        if options.reseed:
            why = "--reseed"
        elif state is None:
            why = "it is empty or holds other data"
        else:
            why = f"it holds {state.rows:,} rows over {state.channels} channels"
        log(f"== Seeding {options.rows:,} rows over {options.channels} channels ({why})")
        started = time.monotonic()
        database.seed(
            db_url,
            rows=options.rows,
            channels=options.channels,
            model_defaults=defaults,
            log=log,
        )
        log(f"   seeded and vacuumed in {time.monotonic() - started:.1f} s")
    else:
        log(f"== Data in place: {options.rows:,} rows over {options.channels} channels")
        database.take_back_writes(db_url, options.rows)

    log("== Staff user and tokens")
    keys = {
        "ours": manage(
            ["-m", "bench.auth", "ours"],
            {**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
        ).strip(),
        "obvious": manage(
            ["-m", "bench.auth", "obvious"],
            {**env, "DJANGO_SETTINGS_MODULE": "bench.obvious.settings"},
        ).strip(),
    }
    fixture = database.fixture(db_url, seed_max_id=options.rows)
    write_inputs(fixture, workdir)
    plan = Plan(
        fixture=fixture,
        workdir=workdir,
        keys=keys,
        insert_defaults=defaults.get(database.FAILED_TABLE, {}),
    )
    log(
        f"   channel {fixture.channel_id}: {fixture.channel_rows:,} rows (the median channel); "
        f"deep page {plan.deep_page}"
    )
    return plan


def main(argv: list[str]) -> int:
    options = parse_args(argv)
    command = shlex.join(["bench/run", *argv])
    pidfile = PidFile(os.environ.get("BENCH_PIDFILE"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed (bench/run installs it: apt-get install wrk)")
    workdir = Path(tempfile.mkdtemp(prefix="fi-bench-"))
    (workdir / "data").mkdir()
    servers: list[Server] = []
    failed = True
    try:
        plan = prepare(options, workdir)
        db_url = plan_db_url(options)
        scenarios, peers = options.scenario_list, options.peer_list
        outcomes = {(s.name, p.name): Outcome() for s in scenarios for p in peers}
        record_answers: dict[str, dict] = {}
        probe = plan.path(SCENARIOS[0])
        for round_ in range(options.repeat):
            # Each round starts with another peer, so that none is always first (or last).
            shift = round_ % len(peers)
            for peer in peers[shift:] + peers[:shift]:
                log(f"== Round {round_ + 1}/{options.repeat}: {peer.name} ({peer.description})")
                server = start_server(
                    peer,
                    workers=options.workers,
                    db_url=db_url,
                    plan=plan,
                    pidfile=pidfile,
                    probe=probe,
                    key=plan.keys[peer.token],
                )
                servers.append(server)
                windows: list[WriteWindow] = []
                try:
                    windows = bench_peer(
                        server, plan, scenarios, outcomes, options, round_ == 0, record_answers
                    )
                finally:
                    server.stop()
                    servers.remove(server)
                    count_writes(db_url, windows)
                    for scenario in scenarios:
                        runs = outcomes[(scenario.name, peer.name)].runs
                        if scenario.write and runs and runs[-1].records_per_s is not None:
                            log(f"   {scenario.name:<17} {runs[-1].records_per_s:9.1f} records/s")
                    deleted = database.take_back_writes(db_url, options.rows)
                    if deleted:
                        log(f"   (deleted the {deleted:,} records it added)")
        notes = same_record(record_answers)
        for (scenario_name, peer_name), outcome in outcomes.items():
            notes += [f"{scenario_name} / {peer_name}: {w}" for w in outcome.warnings]
            if outcome.unsupported:
                notes.append(f"{scenario_name} / {peer_name}: n/a, {outcome.unsupported}")
            for run in outcome.runs:
                if run.sample_error:
                    notes.append(
                        f"{scenario_name} / {peer_name}: non-2xx answers, e.g. "
                        f"{run.sample_error[:200]}"
                    )
                    break
        table = results_table(scenarios, peers, outcomes)
        machine = machine_description(options, plan)
        log("")
        log(table)
        log("")
        for note in notes:
            log(f"note: {note}")
        results = ROOT / options.results
        write_results(results, command, table, machine, scenarios, peers, outcomes, notes)
        log(f"== Written to {options.results}")
        failed = False
    finally:
        for server in servers:
            server.stop()
        if options.drop:
            log(f"== Dropping database {options.database}")
            database.drop_database(options.postgres, options.database)
        if failed:
            log(f"(server logs and inputs kept in {workdir})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as exc:
        print(f"bench/run: {exc}", file=sys.stderr)
        sys.exit(1)
