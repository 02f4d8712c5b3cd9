"""bench/run: load benchmark of the failed-integrations API against reference peers.

Started by bench/run (which installs wrk and the Python packages first); see bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import hashlib
import http.client
import io
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
import statistics
import subprocess
import sys
import tarfile
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

# The databases the peers serve: the benchmark's own (the service's schema, shared by ours,
# obvious and floor), the baseline's (migrated by the --baseline revision) and the obvious
# implementation's own schema. All hold the same rows.
MAIN, BASELINE, OWN = "main", "baseline", "own"


@dataclass(frozen=True)
class Peer:
    name: str
    app: str  # the WSGI application gunicorn serves
    token: str  # which key it takes: "ours" (the service's tokens) or "obvious" (DRF authtoken)
    description: str
    settings: str = ""  # its DJANGO_SETTINGS_MODULE (none for the floor)
    store: str = MAIN  # the database it serves
    # Served from the tree of the --baseline revision instead of the working tree.
    baseline_tree: bool = False

    @property
    def service(self) -> bool:
        """The service itself (now or at the baseline revision), deployed as in production."""
        return self.name in ("ours", "baseline")


PEERS = (
    Peer(
        "ours",
        "config.wsgi:application",
        "ours",
        "the service (config.wsgi), the working tree as it was when the run started",
        "config.settings",
    ),
    Peer(
        "baseline",
        "config.wsgi:application",
        "ours",
        "the service at the --baseline revision, on a database that revision migrated",
        "config.settings",
        store=BASELINE,
        baseline_tree=True,
    ),
    Peer(
        "obvious",
        "bench.peers.obvious.wsgi:application",
        "obvious",
        "stock DRF: ModelViewSet, ModelSerializer, authtoken, on the service's tables",
        "bench.peers.obvious.settings",
    ),
    Peer(
        "obvious_own",
        "bench.peers.obvious.wsgi:application",
        "obvious",
        "the same stock DRF on a schema of its own (bench/peers/obvious_own): its model and "
        "migration, indexes on the foreign keys, version_date, (channel, version_date) and "
        "(content_type, object_id), no triggers",
        "bench.peers.obvious_own.settings",
        store=OWN,
    ),
    Peer("floor", "bench.floor:application", "ours", "bare WSGI + psycopg, one SQL per request"),
)
# The peers of a run without --peers (baseline too when --baseline is given).
DEFAULT_PEERS = ("ours", "obvious", "obvious_own", "floor")
READS = ("retrieve", "list10", "list100_filtered", "deep_page")
# What the issue allows a read against the baseline: a fall of at most 5 %.
READ_TOLERANCE = 0.05


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
class Store:
    """A database that peers serve, and the code tree that migrated it and made its keys."""

    name: str  # MAIN, BASELINE or OWN
    database: str
    url: str
    schema: database.Schema
    tree: Path
    settings: str  # the DJANGO_SETTINGS_MODULE that migrates it
    keys: dict[str, str] = field(default_factory=dict)
    # The models' defaults of the failed integrations' columns (for the floor's inserts).
    insert_defaults: dict[str, object] = field(default_factory=dict)


@dataclass
class Plan:
    """Everything the scenarios address, written to files that the wrk scripts read."""

    fixture: database.Fixture
    workdir: Path
    stores: dict[str, Store]
    current_tree: Path  # the copy of the working tree that every peer but the baseline runs
    baseline_tree: Path | None = None
    runs: int = 0  # write runs so far: each gets its own range of object ids

    def store(self, peer: Peer) -> Store:
        return self.stores[peer.store]

    def key(self, peer: Peer) -> str:
        return self.store(peer).keys[peer.token]

    def tree(self, peer: Peer) -> Path:
        if peer.baseline_tree:
            assert self.baseline_tree is not None
            return self.baseline_tree
        return self.current_tree

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


def django_env(db_url: str, workdir: Path, tree: Path) -> dict[str, str]:
    """The environment of a Django process of the code in `tree` on database `db_url`."""
    data = workdir / f"data-{tree.name}"
    data.mkdir(exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_SETTINGS_MODULE", "DJANGO_ENV", "BENCH_PIDFILE", "PYTHONPATH"}
    }
    env.update(
        DATABASE_URL=db_url,
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DATA_DIR=str(data),
        PYTHONPATH=str(tree),
        LOG_LEVEL="WARNING",
    )
    return env


def peer_env(peer: Peer, plan: Plan) -> dict[str, str]:
    store = plan.store(peer)
    env = django_env(store.url, plan.workdir, plan.tree(peer))
    if peer.settings:
        env.update(DJANGO_SETTINGS_MODULE=peer.settings)
    if peer.service:
        env.update(DJANGO_ENV="production", SECURE_SSL_REDIRECT="false")
    if peer.name == "floor":
        env.update(FLOOR_INSERT_DEFAULTS=json.dumps(store.insert_defaults))
    return env


def start_server(
    peer: Peer, *, workers: int, plan: Plan, pidfile: PidFile, probe: str, key: str
) -> Server:
    workdir = plan.workdir
    tree = plan.tree(peer)
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
        str(tree),
        peer.app,
    ]
    with log_path.open("ab") as output:
        process = subprocess.Popen(
            command,
            cwd=tree,
            env=peer_env(peer, plan),
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
    if server.peer.service and scenario.name == "bulk1000" and status in (404, 405):
        return "n/a", f"{scenario.method} {path} answers {status} (no bulk endpoint)"
    message = (
        f"{server.peer.name} {scenario.method} {path} answered {status}, not {expected}: {text}"
    )
    if not scenario.write and scenario.method == "GET":
        raise BenchError(
            f"{message}\n(if the service changed while the benchmark ran, e.g. a new migration, "
            "run it again)\n{server.log_tail()}"
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
    peer = server.peer
    store = plan.store(peer)
    key = plan.key(peer)
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
            # The preflight's records.
            database.take_back_writes(store.url, options.rows, store.schema)
    for scenario in scenarios:
        outcome = outcomes[(scenario.name, peer.name)]
        if outcome.unsupported:
            continue
        if options.warmup > 0:
            script, args = plan.wrk_script(scenario, key)
            run_wrk(
                server.port,
                script,
                args,
                threads=options.threads,
                connections=options.connections,
                duration=options.warmup,
            )
        # The run's own arguments: a write reports objects of a range of its own, not the
        # warm-up's again (a report of an object already reported supersedes it, which costs
        # the service a second write that a peer without supersede never makes).
        script, args = plan.wrk_script(scenario, key)
        if scenario.write:
            after, started = database.last_id(store.url, store.schema), time.monotonic()
        run = run_wrk(
            server.port,
            script,
            args,
            threads=options.threads,
            connections=options.connections,
            duration=options.duration,
        )
        if scenario.write:
            upto = database.last_id(store.url, store.schema)
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


def count_writes(store: Store, windows: list[WriteWindow]) -> None:
    for window in windows:
        created = database.count_ids(store.url, window.after, window.upto, store.schema)
        window.run.records_per_s = created / window.seconds if window.seconds else 0.0


# --- report ----------------------------------------------------------------------------------


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def fmt_ratio(numerator: Run | None, denominator: Run | None) -> str:
    if numerator is None or denominator is None or not denominator.rate:
        return "n/a"
    return f"{numerator.rate / denominator.rate:.2f}x"


# The ratio columns, (header, the peer that ours' rate is divided by), shown when both ran.
RATIOS = (
    ("ours/obvious", "obvious"),
    ("vs obvious (own schema)", "obvious_own"),
    ("ours/floor", "floor"),
    ("vs baseline", "baseline"),
)


def ratio_columns(peers: list[Peer]) -> list[tuple[str, str]]:
    names = {p.name for p in peers}
    if "ours" not in names:
        return []
    return [(header, name) for header, name in RATIOS if name in names]


def results_table(
    scenarios: list[Scenario], peers: list[Peer], outcomes: dict[tuple[str, str], Outcome]
) -> str:
    ratios = ratio_columns(peers)
    header = [
        "scenario",
        "peer",
        "req/s",
        "records/s",
        "p50 ms",
        "p99 ms",
        "non-2xx",
        *(h for h, _ in ratios),
        "bulk vs create",
    ]
    numeric = {2, 3, 4, 5, *range(7, len(header))}
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
            if index == 0:
                row += [fmt_ratio(medians["ours"], medians[name]) for _, name in ratios]
            else:
                row += [""] * len(ratios)
            row.append(bulk_vs_create(scenario, peer, outcomes))
            rows.append(row)
    return markdown_table(header, rows, numeric)


def markdown_table(header: list[str], rows: list[list[str]], numeric: set[int]) -> str:
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


@dataclass(frozen=True)
class Comparison:
    """Ours against the baseline in one scenario."""

    scenario: Scenario
    ratio: float | None  # ours' median over the baseline's median
    rounds: list[float]  # ours over the baseline in each round (the two ran next to each other)

    @property
    def fell(self) -> bool:
        """A read that fell by more than the tolerance (by the ratio of the medians)."""
        return (
            self.scenario.name in READS
            and self.ratio is not None
            and self.ratio < 1 - READ_TOLERANCE
        )


def compare_with_baseline(
    scenarios: list[Scenario], outcomes: dict[tuple[str, str], Outcome]
) -> list[Comparison]:
    comparisons = []
    for scenario in scenarios:
        ours, baseline = outcomes[(scenario.name, "ours")], outcomes[(scenario.name, "baseline")]
        a, b = ours.median, baseline.median
        ratio = a.rate / b.rate if a and b and b.rate else None
        rounds = [x.rate / y.rate for x, y in zip(ours.runs, baseline.runs, strict=False) if y.rate]
        comparisons.append(Comparison(scenario, ratio, rounds))
    return comparisons


def baseline_section(comparisons: list[Comparison], revision: str) -> list[str]:
    header = [
        "scenario",
        "vs baseline",
        "median of the rounds' ratios",
        "each round's ratio, in order",
        "read fell by more than 5 %",
    ]
    rows = []
    for c in comparisons:
        rows.append(
            [
                c.scenario.name,
                f"{c.ratio:.2f}x" if c.ratio is not None else "n/a",
                f"{statistics.median(c.rounds):.2f}x" if c.rounds else "n/a",
                ", ".join(f"{r:.2f}" for r in c.rounds) or "n/a",
                ("yes" if c.fell else "no") if c.scenario.name in READS else "(a write)",
            ]
        )
    fell = [c.scenario.name for c in comparisons if c.fell]
    return [
        "### Ours against the baseline",
        "",
        f"`vs baseline` is ours' median rate over the median rate of the service at {revision} "
        "(each on a database of its own with the same rows); the round-by-round ratios pair "
        "the two runs of one round, which ran next to each other, so the machine's drift "
        "over the run cancels out in each. A read falls by more than 5 % when its `vs "
        f"baseline` is below {1 - READ_TOLERANCE:.2f}.",
        "",
        markdown_table(header, rows, {1, 2}),
        "",
        "Reads that fell by more than 5 % against the baseline: "
        + (", ".join(fell) if fell else "none")
        + ".",
        "",
    ]


def command_output(command: list[str]) -> str:
    try:
        return subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=20
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def git(*args: str) -> str:
    """Output of a read-only git command in the repository ("" when it is not one)."""
    return command_output(["git", "--no-optional-locks", "-C", str(ROOT), *args])


@dataclass(frozen=True)
class TreeState:
    """The revision of the working tree that ours is served from, and its changes."""

    head: str
    changed: int  # paths changed outside bench/, tracked or not
    bench_changed: int  # paths changed in bench/
    digest: str  # of the changes outside bench/: tells whether they changed during a run

    def describe(self) -> str:
        if not self.head:
            return "not a git checkout"
        text = self.head
        if self.changed:
            text += (
                f" + working tree ({self.changed} paths changed outside bench/, "
                f"sha256 of their changes {self.digest})"
            )
        else:
            text += " (no changes outside bench/)"
        if self.bench_changed:
            text += f"; bench/ has {self.bench_changed} changed paths"
        return text


def tree_state() -> TreeState:
    outside = ["--", ".", ":(exclude)bench"]
    changed = git("status", "--porcelain", "--untracked-files=all", *outside).splitlines()
    bench_changed = git("status", "--porcelain", "--untracked-files=all", "--", "bench")
    digest = hashlib.sha256(git("diff", "HEAD", *outside).encode())
    for path in sorted(git("ls-files", "--others", "--exclude-standard", *outside).splitlines()):
        digest.update(path.encode())
        with contextlib.suppress(OSError):
            digest.update((ROOT / path).read_bytes())
    return TreeState(
        head=git("rev-parse", "HEAD"),
        changed=len(changed),
        bench_changed=len(bench_changed.splitlines()),
        digest=digest.hexdigest()[:16],
    )


def machine_description(
    options: argparse.Namespace, plan: Plan, extra: list[tuple[str, str]]
) -> list[tuple[str, str]]:
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
        *extra,
        ("date", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
    ]


RESULTS_TITLE = "# Benchmark results"
RUN_MARK = "<!-- one run of bench/run -->"


def run_section(
    options: argparse.Namespace,
    command: str,
    table: str,
    machine: list[tuple[str, str]],
    scenarios: list[Scenario],
    peers: list[Peer],
    outcomes: dict[tuple[str, str], Outcome],
    notes: list[str],
    comparison: list[str],
) -> list[str]:
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        RUN_MARK,
        f"## {options.rows:,} rows, {options.repeat} round(s) of {options.duration:g} s ({date})",
        "",
        "Produced by:",
        "",
        "```sh",
        command,
        "```",
        "",
        "`req/s` counts 2xx answers only; `records/s` (writes) counts the records created in "
        "the database while wrk ran. Each row is the median run of its scenario and peer (by "
        "records/s for writes, else by req/s), with wrk's p50/p99 latency of that run. Ratios "
        "are ours' rate over the other peer's (above 1: ours is faster); `bulk vs create` is a "
        "peer's records/s in bulk over its records/s one by one.",
        "",
        table,
        "",
        *comparison,
        "### Machine",
        "",
        *(f"- **{name}**: {value}" for name, value in machine),
        "",
        "### Scenarios",
        "",
        *(f"- `{s.name}`: {s.description}" for s in scenarios),
        "",
        "### Peers",
        "",
        *(f"- `{p.name}`: {p.description}" for p in peers),
    ]
    if notes:
        lines += ["", "### Notes", "", *(f"- {note}" for note in notes)]
    lines += [
        "",
        "### Every run",
        "",
        "req/s (2xx answers) of each run, records/s for create and bulk1000, one per round in "
        "the order of the rounds:",
        "",
    ]
    for scenario in scenarios:
        for peer in peers:
            outcome = outcomes[(scenario.name, peer.name)]
            runs = ", ".join(fmt_rate(r.rate) for r in outcome.runs) or "n/a"
            lines.append(f"- {scenario.name} / {peer.name}: {runs}")
    return lines


def write_results(path: Path, section: list[str], keep: bool) -> None:
    """Writes the run's section; with `keep`, above the runs the file already holds."""
    earlier = ""
    if keep and path.exists():
        text = path.read_text()
        if RUN_MARK in text:
            earlier = text[text.index(RUN_MARK) :].rstrip() + "\n"
    head = [
        RESULTS_TITLE,
        "",
        "Each section is one run of `bench/run`, the newest first. See "
        "[README.md](README.md) for what the peers and scenarios are and how to read the "
        "ratios.",
        "",
    ]
    text = "\n".join([*head, *section]) + "\n"
    path.write_text(text + ("\n" + earlier if earlier else ""))


# --- main ------------------------------------------------------------------------------------


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows the defaults that are values (not those of flags, nor an absent option's)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run",
        description=(
            "Load benchmark of the failed-integrations API: the service ('ours'), optionally "
            "the service at an earlier revision ('baseline'), the obvious DRF implementation "
            "on the service's tables and on a schema of its own, and a raw WSGI floor, one at "
            "a time under gunicorn, driven by wrk, on PostgreSQL databases of the benchmark's "
            "own."
        ),
        epilog=f"A quick run: {USAGE_EXAMPLE}. See bench/README.md.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="failed integrations")
    parser.add_argument("--channels", type=int, default=50, help="channels they are spread over")
    parser.add_argument(
        "--database",
        default="fi_bench",
        help="the benchmark's database; the other peers' are named after it "
        "(NAME_baseline_REV, NAME_obvious_own)",
    )
    parser.add_argument(
        "--postgres",
        default="postgres://postgres@127.0.0.1:5432",
        help="the PostgreSQL server (a user that may create databases)",
    )
    parser.add_argument("--reseed", action="store_true", help="seed even if the data is there")
    parser.add_argument("--drop", action="store_true", help="drop the databases at the end")
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also serve the service as it was at git revision REV (peer 'baseline'), on a "
        "database of its own that REV's migrations make, with the same rows",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers of each peer")
    parser.add_argument("--duration", type=float, default=10, help="seconds of each wrk run")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of the discarded run")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (the median run)")
    parser.add_argument(
        "--peers",
        help="comma-separated subset of: "
        + ", ".join(p.name for p in PEERS)
        + f" (default: {','.join(DEFAULT_PEERS)}, and baseline with --baseline)",
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
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the runs the results file holds (this one goes above them)",
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
    if options.peers is None:
        wanted = [p.name for p in PEERS if p.name in DEFAULT_PEERS]
        if options.baseline:
            wanted.insert(1, "baseline")
    else:
        wanted = options.peers.split(",")
    unknown = set(wanted) - {p.name for p in PEERS}
    if unknown or not wanted:
        parser.error(f"unknown peers: {', '.join(sorted(unknown)) or '(none given)'}")
    options.baseline_commit = ""
    if options.baseline:
        options.baseline_commit = git(
            "rev-parse", "--verify", "--quiet", f"{options.baseline}^{{commit}}"
        )
        if not options.baseline_commit:
            parser.error(f"--baseline {options.baseline}: not a revision of this repository")
        if "baseline" not in wanted:
            parser.error("--baseline is given but --peers leaves out baseline")
    elif "baseline" in wanted:
        parser.error("the baseline peer needs --baseline REV")
    options.peer_list = []
    for peer in PEERS:
        if peer.name not in wanted:
            continue
        if peer.name == "baseline":
            peer = dataclasses.replace(
                peer,
                description=f"the service at {options.baseline} "
                f"({options.baseline_commit[:12]}, config.wsgi), on a database of its own that "
                "this revision's migrations made",
            )
        options.peer_list.append(peer)
    wanted = options.scenarios.split(",")
    unknown = set(wanted) - set(SCENARIO_NAMES)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    options.scenario_list = [s for s in SCENARIOS if s.name in wanted]
    return options


def manage(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> str:
    result = subprocess.run(
        [PYTHON, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise BenchError(f"{shlex.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def copy_working_tree() -> Path:
    """A copy of the working tree as it is now (the files git tracks, as they are, and those
    it does not ignore), in a new temporary directory: the run serves it, so that edits made
    to the working tree while the benchmark runs do not change what is measured."""
    tree = Path(tempfile.mkdtemp(prefix="fi-bench-tree-"))
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard")
    if not listed:
        shutil.rmtree(tree, ignore_errors=True)
        raise BenchError("git ls-files answered nothing: bench/run needs a git checkout")
    for name in sorted(set(listed.split("\0")) - {""}):
        source = ROOT / name
        if not source.is_file():  # deleted in the working tree
            continue
        target = tree / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return tree


def export_tree(commit: str) -> Path:
    """The service's files at `commit` in a new temporary directory (git archive), with the
    benchmark's own user and key module (bench/auth.py of the working tree) beside them."""
    tree = Path(tempfile.mkdtemp(prefix=f"fi-bench-baseline-{commit[:7]}-"))
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        shutil.rmtree(tree, ignore_errors=True)
        raise BenchError(f"git archive {commit} failed: {archive.stderr.decode(errors='replace')}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        members = [m for m in tar.getmembers() if m.name.split("/")[0] != "bench"]
        tar.extractall(tree, members=members, filter="data")
    (tree / "bench").mkdir()
    for name in ("__init__.py", "auth.py"):
        shutil.copy2(BENCH / name, tree / "bench" / name)
    return tree


def check_imports(tree: Path, env: dict[str, str]) -> None:
    """The service's packages must be imported from `tree` (not, e.g., from the working tree
    through the virtualenv's editable install)."""
    code = (
        "import importlib.util, json; print(json.dumps({n: importlib.util.find_spec(n).origin "
        "for n in ('config', 'accounts', 'integrations')}))"
    )
    origins = json.loads(manage(["-c", code], env, cwd=tree))
    for name, origin in origins.items():
        if not Path(origin).resolve().is_relative_to(tree.resolve()):
            raise BenchError(f"{name} is imported from {origin}, not from {tree}")


def prepare_store(
    store: Store,
    options: argparse.Namespace,
    workdir: Path,
    *,
    anchor: dt.datetime | None,
    needs_anchor: bool,
) -> tuple[dt.datetime | None, bool]:
    """Creates, migrates and seeds the store's database unless the rows are in place.
    Answers the anchor of its rows' dates and whether it was seeded now."""
    log(f"== Database {store.database} on {options.postgres}")
    created = database.ensure_database(options.postgres, store.database)
    log("   created" if created else "   exists (created by an earlier bench/run)")
    env = django_env(store.url, workdir, store.tree)
    settings_env = {**env, "DJANGO_SETTINGS_MODULE": store.settings}
    defaults: dict[str, dict[str, object]] = {}
    if store.name == OWN:
        log("== Migrations (bench/peers/obvious_own's, DRF authtoken's and Django's own)")
        manage(["-m", "django", "migrate", "--noinput", "-v", "0"], settings_env, store.tree)
    else:
        if store.name == BASELINE:
            check_imports(store.tree, env)
            log(f"== Migrations of {options.baseline} (its own, from its exported files)")
        else:
            log("== Migrations (the service's, then DRF authtoken's for the obvious peer)")
        manage(["manage.py", "migrate", "--noinput", "-v", "0"], env, cwd=store.tree)
        if store.name == MAIN:
            manage(
                ["-m", "django", "migrate", "authtoken", "--noinput", "-v", "0"],
                {**env, "DJANGO_SETTINGS_MODULE": "bench.peers.obvious.settings"},
                store.tree,
            )
        defaults = json.loads(manage(["-m", "bench.auth", "defaults"], settings_env, store.tree))
    store.insert_defaults = defaults.get(store.schema.failed_table, {})

    with psycopg.connect(store.url) as connection:
        state = database.current_state(connection, store.schema)
    wanted = database.SeedState(rows=options.rows, channels=options.channels)
    why = ""
    if options.reseed:
        why = "--reseed"
    elif state is None:
        why = "it is empty or holds other data"
    elif state != wanted:
        why = f"it holds {state.rows:,} rows over {state.channels} channels"
    elif anchor is not None and state.anchor != anchor:
        why = "its rows were seeded at another time than the benchmark's database's"
    elif needs_anchor and state.anchor is None:
        why = "an earlier bench/run seeded it without recording when"
    if not why:
        log(f"== Data in place: {options.rows:,} rows over {options.channels} channels")
        database.take_back_writes(store.url, options.rows, store.schema)
        assert state is not None
        return state.anchor, False
    log(f"== Seeding {options.rows:,} rows over {options.channels} channels ({why})")
    started = time.monotonic()
    anchor = database.seed(
        store.url,
        rows=options.rows,
        channels=options.channels,
        model_defaults=defaults,
        log=log,
        anchor=anchor,
        schema=store.schema,
    )
    # The count deltas its triggers left folded, as between peers: every peer starts alike.
    database.take_back_writes(store.url, options.rows, store.schema)
    log(f"   seeded and vacuumed in {time.monotonic() - started:.1f} s")
    return anchor, True


def stores_of(
    options: argparse.Namespace, current_tree: Path, baseline_tree: Path | None
) -> dict[str, Store]:
    def url(name: str) -> str:
        return database.database_url(options.postgres, name)

    stores = {
        MAIN: Store(
            MAIN,
            options.database,
            url(options.database),
            database.SERVICE,
            current_tree,
            "config.settings",
        )
    }
    wanted = {p.store for p in options.peer_list}
    if BASELINE in wanted:
        assert baseline_tree is not None
        name = f"{options.database}_baseline_{options.baseline_commit[:7]}"
        stores[BASELINE] = Store(
            BASELINE, name, url(name), database.SERVICE, baseline_tree, "config.settings"
        )
    if OWN in wanted:
        name = f"{options.database}_obvious_own"
        stores[OWN] = Store(
            OWN, name, url(name), database.OWN, current_tree, "bench.peers.obvious_own.settings"
        )
    return stores


def prepare(
    options: argparse.Namespace, workdir: Path, current_tree: Path, baseline_tree: Path | None
) -> Plan:
    stores = stores_of(options, current_tree, baseline_tree)
    main = stores[MAIN]
    others = [s for s in stores.values() if s is not main]
    # The benchmark's database first: the others get its rows, dates reckoned from its anchor.
    anchor, _ = prepare_store(main, options, workdir, anchor=None, needs_anchor=bool(others))
    reference = database.fingerprint(main.url, seed_max_id=options.rows)
    fixture = database.fixture(main.url, seed_max_id=options.rows)
    for store in others:
        _, seeded = prepare_store(store, options, workdir, anchor=anchor, needs_anchor=True)
        differences = database.fingerprint(
            store.url, seed_max_id=options.rows, schema=store.schema
        ).differences(reference)
        if differences and not seeded:
            log(f"== Seeding {store.database} again: its rows differ ({differences[0]})")
            database.seed(
                store.url,
                rows=options.rows,
                channels=options.channels,
                log=log,
                anchor=anchor,
                schema=store.schema,
            )
            differences = database.fingerprint(
                store.url, seed_max_id=options.rows, schema=store.schema
            ).differences(reference)
        if differences:
            raise BenchError(
                f"{store.database} does not hold the same rows as {main.database}: "
                + "; ".join(differences[:5])
            )
        theirs = database.fixture(store.url, seed_max_id=options.rows, schema=store.schema)
        if theirs != fixture:
            raise BenchError(f"{store.database} gives another fixture than {main.database}")
        log(
            f"   same rows as {main.database}: {len(reference.channels)} channels, the rows of "
            "each (count and contents) and the content types' ids are equal"
        )

    log("== Staff user and tokens")
    for store in stores.values():
        env = django_env(store.url, workdir, store.tree)
        if store.name == OWN:
            commands = {"obvious": store.settings}
        elif store.name == BASELINE:
            commands = {"ours": store.settings}
        else:
            commands = {"ours": store.settings, "obvious": "bench.peers.obvious.settings"}
        for token, settings in commands.items():
            store.keys[token] = manage(
                ["-m", "bench.auth", token], {**env, "DJANGO_SETTINGS_MODULE": settings}, store.tree
            ).strip()
    write_inputs(fixture, workdir)
    plan = Plan(
        fixture=fixture,
        workdir=workdir,
        stores=stores,
        current_tree=current_tree,
        baseline_tree=baseline_tree,
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
    servers: list[Server] = []
    failed = True
    current_tree: Path | None = None
    baseline_tree: Path | None = None
    stores: dict[str, Store] = {}
    try:
        tree_before = tree_state()
        load_before = os.getloadavg()
        current_tree = copy_working_tree()
        log("== The working tree copied to a temporary directory (served for the whole run)")
        check_imports(current_tree, django_env("", workdir, current_tree))
        if options.baseline:
            baseline_tree = export_tree(options.baseline_commit)
            log(
                f"== {options.baseline} ({options.baseline_commit[:12]}) exported to a "
                "temporary directory (git archive)"
            )
        stores = stores_of(options, current_tree, baseline_tree)
        plan = prepare(options, workdir, current_tree, baseline_tree)
        scenarios, peers = options.scenario_list, options.peer_list
        outcomes = {(s.name, p.name): Outcome() for s in scenarios for p in peers}
        record_answers: dict[str, dict] = {}
        probe = plan.path(SCENARIOS[0])
        orders: list[list[str]] = []
        for round_ in range(options.repeat):
            # The peers in their order, then the other way round, and so on (A B C, C B A,
            # A B C, ...): a drift of the machine over the run weighs on every peer alike, and
            # neighbours (ours and the baseline) run next to each other in every round.
            order = peers if round_ % 2 == 0 else peers[::-1]
            orders.append([p.name for p in order])
            for peer in order:
                log(f"== Round {round_ + 1}/{options.repeat}: {peer.name} ({peer.description})")
                store = plan.store(peer)
                server = start_server(
                    peer,
                    workers=options.workers,
                    plan=plan,
                    pidfile=pidfile,
                    probe=probe,
                    key=plan.key(peer),
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
                    count_writes(store, windows)
                    for scenario in scenarios:
                        runs = outcomes[(scenario.name, peer.name)].runs
                        if scenario.write and runs and runs[-1].records_per_s is not None:
                            log(f"   {scenario.name:<17} {runs[-1].records_per_s:9.1f} records/s")
                    deleted = database.take_back_writes(store.url, options.rows, store.schema)
                    if deleted:
                        log(f"   (deleted the {deleted:,} records it added)")
        tree_after = tree_state()
        load_after = os.getloadavg()
        notes = same_record(record_answers)
        if tree_after != tree_before:
            notes.append(
                "the working tree changed while the benchmark ran (all peers but the baseline "
                "served the copy taken at the start): at the start "
                f"{tree_before.describe()}; at the end {tree_after.describe()}"
            )
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
        names = {p.name for p in peers}
        comparison: list[str] = []
        if {"ours", "baseline"} <= names:
            comparisons = compare_with_baseline(scenarios, outcomes)
            comparison = baseline_section(
                comparisons, f"{options.baseline} ({options.baseline_commit[:12]})"
            )
        extra = [("ours", f"{tree_before.describe()}, copied at the start of the run")]
        if options.baseline:
            extra.append(("baseline", f"{options.baseline} = {options.baseline_commit}"))
        extra += [
            (
                "databases",
                "; ".join(
                    f"{s.database} ({', '.join(p.name for p in peers if p.store == s.name)})"
                    for s in plan.stores.values()
                )
                + (
                    ": the same seeded rows in each, checked (count and contents per channel)"
                    if len(plan.stores) > 1
                    else ""
                ),
            ),
            (
                "rounds",
                "; ".join(f"{i + 1}: {' → '.join(o)}" for i, o in enumerate(orders)),
            ),
            (
                "load average (1/5/15 min)",
                f"{' '.join(f'{v:.2f}' for v in load_before)} at the start, "
                f"{' '.join(f'{v:.2f}' for v in load_after)} at the end",
            ),
        ]
        machine = machine_description(options, plan, extra)
        log("")
        log(table)
        log("")
        if comparison:
            log("\n".join(comparison))
        for note in notes:
            log(f"note: {note}")
        results = ROOT / options.results
        section = run_section(
            options, command, table, machine, scenarios, peers, outcomes, notes, comparison
        )
        write_results(results, section, options.keep)
        log(f"== Written to {options.results}")
        failed = False
    finally:
        for server in servers:
            server.stop()
        if options.drop:
            for store in stores.values():
                log(f"== Dropping database {store.database}")
                database.drop_database(options.postgres, store.database)
        for tree in (current_tree, baseline_tree):
            if tree is not None:
                shutil.rmtree(tree, ignore_errors=True)
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
