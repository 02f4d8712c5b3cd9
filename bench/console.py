"""The operator console's page server times at scale, beside the stock Django admin's pages of
the same records, and the export's throughput.

    .venv/bin/python bench/console.py [--rows 2000000] [--requests 20] [--repeat 5]

On PostgreSQL, with `--rows` failed integrations in ONE channel (database `fi_bench_console`,
seeded once with a binary COPY; skipped when it already holds the rows), the working tree as it
is now (a copy of it, so that edits made meanwhile do not change what is measured) is served by
gunicorn (sync workers, `--workers`, on a free loopback port; embedded settings: DJANGO_ENV
unset, DATABASE_URL set) and driven by one httpx client per peer from this process, one request
at a time: at concurrency 1 the response time is the page's server time plus a loopback round
trip (the service sends no Server-Timing header, so the wall time of each request, body read,
is measured).

Peers: the console (session of a superuser, logged in through /console/login/) and the admin
(the same superuser, logged in through /admin/login/). In every round each page gets
`--requests` requests per peer, console and admin alternating request by request (the admin
first in odd rounds). The table shows the median over the rounds of each round's p50 and p95,
the console/admin ratio of those (a time ratio: below 1 the console is faster), and the
export's records/s (CSV and NDJSON of `--export-query`, every round; of the whole channel
once, in the last round, unless `--no-export-full`). A Prometheus scrape of `/metrics` is timed
beside the pages (its gauges read the records' counts). See bench/CONSOLE.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import random
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ is first on sys.path, and this file would shadow the service's
# `console` package: the repository takes its place.
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)

import httpx  # noqa: E402
import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from bench import database  # noqa: E402
from bench.harness import check_imports, copy_working_tree, django_env, free_port, manage  # noqa: E402

POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
TARGET_MS = 300.0
EXPORT_TARGET = 20_000  # records/s
USERNAME = "bench_console"
SEED_TABLE = "bench_console_seed"
# Bump when the generated rows change: a database seeded by another version is seeded again.
SEED_VERSION = 1
SEED = 20261201
DAY = 86400.0
RETRY_ENDPOINT = "https://channel-app.bench.invalid/retry"  # never called: no worker runs

REASONS = (("remote", 0.60), ("mapping", 0.20), ("channel_app", 0.20))


def log(message: str = "") -> None:
    print(message, file=sys.stderr, flush=True)


# --- seeding ---------------------------------------------------------------------------------

# The benchmark seeder's columns, and the retry engine's, which it leaves to their defaults.
COLUMNS = (
    *database.FAILED_COLUMNS,
    "parked",
    "resolution",
    "resolved_at",
    "next_retry_at",
    "last_attempt_at",
    "last_error",
    "lease_owner",
    "lease_expires_at",
)


def generate_rows(
    rng: random.Random,
    rows: int,
    channel_id: int,
    type_ids: list[int],
    type_weights: list[float],
    now: dt.datetime,
):
    """The failures of one channel created over the last 30 days, in time order (ids follow
    created_date), with every state occurring: active 85 % (of which 8 % past their expiry,
    5 % parked, 0.2 % leased by a worker, half exhausted, the others due or pending), inactive
    15 % (resolved, superseded or expired, resolved at some time after they failed)."""
    reasons = rng.choices([r for r, _ in REASONS], weights=[w for _, w in REASONS], k=rows)
    types = rng.choices(type_ids, weights=type_weights, k=rows)
    now_s = now.timestamp()
    start = now_s - 30 * DAY
    step = 30 * DAY / rows
    ts = dt.datetime.fromtimestamp
    utc = dt.UTC
    r = rng.random
    for i in range(rows):
        created = start + (i + r()) * step
        reason = reasons[i]
        retry_count = int(r() * 6)
        max_retry = 1 + int(r() * 5)
        interval = int(r() * 3601)
        exhausted = retry_count >= max_retry
        last_attempt = created + r() * (now_s - created) if retry_count else None
        expiration = parked = resolved_at = next_retry = lease = None
        resolution, lease_owner = "", ""
        is_active = r() < 0.85
        if not is_active:
            roll = r()
            resolution = "resolved" if roll < 0.6 else "superseded" if roll < 0.9 else "expired"
            resolved_at = created + r() * (now_s - created)
            if resolution == "expired":
                expiration = resolved_at
            elif r() < 0.5:
                expiration = now_s + r() * 90 * DAY
            modified = resolved_at
        else:
            roll = r()
            if roll < 0.08:  # past its expiry, not yet deactivated: expired
                expiration = created + r() * (now_s - created)
            elif roll < 0.50:
                expiration = now_s + r() * 90 * DAY
            parked = r() < 0.05
            if not parked and r() < 0.002:
                # Leased for a year, so that the state stays in progress as long as the
                # database is kept (a real lease lasts RETRY_LEASE_SECONDS).
                lease = now_s + 365 * DAY
                lease_owner = "bench-worker-1"
            if not exhausted and reason != "mapping" and not parked:
                # Scheduled: 40 % due already, the others within the next day.
                due = r() < 0.4
                next_retry = created + r() * (now_s - created) if due else now_s + r() * DAY
            modified = max(created, last_attempt or created)
        yield (
            channel_id,
            ts(created - r() * 600, utc),
            reason,
            is_active,
            types[i],
            1 + int(r() * 1_000_000),  # object_id: some objects fail more than once
            None if expiration is None else ts(expiration, utc),
            retry_count,
            max_retry,
            interval,
            None if r() < 0.3 else 1 + int(r() * 2_000_000_000),
            ts(created, utc),
            ts(min(modified, now_s), utc),
            bool(parked),
            resolution,
            None if resolved_at is None else ts(resolved_at, utc),
            None if next_retry is None else ts(next_retry, utc),
            None if last_attempt is None else ts(last_attempt, utc),
            "HTTP 503 from the channel app: Service Unavailable" if retry_count else "",
            lease_owner,
            None if lease is None else ts(lease, utc),
        )


def seeded_rows(db_url: str) -> tuple[int, int, dt.datetime] | None:
    """(rows, channel id, seeded at) of a complete seeding of this version, else None."""
    with psycopg.connect(db_url) as connection:
        exists = connection.execute("SELECT to_regclass(%s)", (SEED_TABLE,)).fetchone()[0]
        if exists is None:
            return None
        row = connection.execute(
            sql.SQL("SELECT rows, channel_id, seeded_at, version FROM {}").format(
                sql.Identifier(SEED_TABLE)
            )
        ).fetchone()
        if row is None or row[3] != SEED_VERSION:
            return None
        rows, channel_id, seeded_at, _ = row
        found = connection.execute(
            "SELECT count(*) FROM integrations_failedintegration WHERE channel_id = %s",
            (channel_id,),
        ).fetchone()[0]
        channels = connection.execute("SELECT count(*) FROM integrations_channel").fetchone()[0]
    if found != rows or channels != 1:
        return None
    return rows, channel_id, seeded_at


def seed(db_url: str, rows: int, model_defaults: dict) -> int:
    """Empties the service's tables and fills one channel with `rows` failures (binary COPY,
    the secondary indexes and foreign keys made again after it, as bench/database.py does; the
    count triggers fire), a few retry attempts, then VACUUM ANALYZE. Answers the channel id."""
    rng = random.Random(SEED)
    now = dt.datetime.now(dt.UTC)
    with psycopg.connect(db_url) as connection:
        connection.execute("SET synchronous_commit = off")
        type_ids = database.content_type_ids(connection)
        connection.execute(
            "TRUNCATE integrations_failedintegration, integrations_integrationaction, "
            "integrations_channel RESTART IDENTITY CASCADE"
        )
        channel = {
            "name": "Bench marketplace (console)",
            "channel_type": "marketplace",
            "is_active": True,
            "retry_endpoint": RETRY_ENDPOINT,
            "signing_secret": "",
            "created_date": now - dt.timedelta(days=365),
            "modified_date": now - dt.timedelta(days=365),
        }
        extra = database.extra_required_columns(
            connection,
            database.CHANNEL_TABLE,
            set(channel),
            rng,
            model_defaults.get(database.CHANNEL_TABLE, {}),
        )
        channel |= extra
        channel_id = connection.execute(
            sql.SQL("INSERT INTO integrations_channel ({}) VALUES ({}) RETURNING id").format(
                sql.SQL(", ").join(map(sql.Identifier, channel)),
                sql.SQL(", ").join(sql.Placeholder() * len(channel)),
            ),
            list(channel.values()),
        ).fetchone()[0]

        types = database.column_types(connection, database.FAILED_TABLE)
        missing = [c for c in COLUMNS if c not in types]
        if missing:
            raise SystemExit(f"{database.FAILED_TABLE} has no column {', '.join(missing)}")
        extra = database.extra_required_columns(
            connection,
            database.FAILED_TABLE,
            set(COLUMNS),
            random.Random(SEED + 1),
            model_defaults.get(database.FAILED_TABLE, {}),
        )
        if extra:
            log(f"   (also filling {', '.join(extra)} with their defaults: required columns)")
        copy_columns = [*COLUMNS, *extra]
        extras = list(extra.values())
        copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(database.FAILED_TABLE),
            sql.SQL(", ").join(map(sql.Identifier, copy_columns)),
        )
        started = time.monotonic()
        rebuild = database._drop_secondary_indexes_and_foreign_keys(
            connection, database.FAILED_TABLE
        )
        ids = [type_ids[(a, m)] for a, m, _ in database.CONTENT_TYPES]
        weights = [w for _, _, w in database.CONTENT_TYPES]
        with connection.cursor() as cursor, cursor.copy(copy) as writer:
            writer.set_types([types[c] for c in copy_columns])
            for row in generate_rows(rng, rows, channel_id, ids, weights, now):
                writer.write_row(
                    (*row, *(v() if callable(v) else v for v in extras)) if extras else row
                )
        copied = time.monotonic()
        log(f"   copied {rows:,} rows in {copied - started:.1f} s (count triggers included)")
        connection.execute("SET maintenance_work_mem = '512MB'")
        for statement in rebuild:
            connection.execute(statement)
        log(
            f"   rebuilt {len(rebuild)} indexes and foreign keys in "
            f"{time.monotonic() - copied:.1f} s"
        )
        # Retry attempts of one record in 20 that was tried (its retry_count attempts): the
        # record page lists them, the overview's health reads the channel's latest.
        attempts = connection.execute(
            """
            INSERT INTO integrations_retryattempt (failed_integration_id, number,
                idempotency_key, worker, started_at, finished_at, outcome, http_status, error)
            SELECT f.id, n, f.id || '-' || n, 'bench-worker-1', s, s + interval '180 ms',
                CASE WHEN NOT f.is_active AND f.resolution = 'resolved' AND n = f.retry_count
                     THEN 'success' ELSE 'http_error' END,
                CASE WHEN NOT f.is_active AND f.resolution = 'resolved' AND n = f.retry_count
                     THEN 200 ELSE 503 END,
                CASE WHEN NOT f.is_active AND f.resolution = 'resolved' AND n = f.retry_count
                     THEN '' ELSE 'HTTP 503: Service Unavailable' END
            FROM integrations_failedintegration f
            CROSS JOIN LATERAL generate_series(1, f.retry_count) AS n
            CROSS JOIN LATERAL (SELECT f.created_date + (f.last_attempt_at - f.created_date)
                                 * n / f.retry_count AS s) AS t
            WHERE f.id % 20 = 0 AND f.retry_count > 0
            """
        ).rowcount
        log(f"   {attempts:,} retry attempts")
        table = sql.Identifier(SEED_TABLE)
        connection.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        connection.execute(
            sql.SQL(
                "CREATE TABLE {} (rows bigint NOT NULL, channel_id bigint NOT NULL, "
                "seeded_at timestamptz NOT NULL, version integer NOT NULL)"
            ).format(table)
        )
        connection.execute(
            sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s)").format(table),
            (rows, channel_id, now, SEED_VERSION),
        )
        connection.commit()
    started = time.monotonic()
    database.vacuum(db_url)  # VACUUM ANALYZE, CHECKPOINT
    log(f"   VACUUM ANALYZE in {time.monotonic() - started:.1f} s")
    return channel_id


# --- measuring -------------------------------------------------------------------------------


@dataclass
class Page:
    name: str
    console: str  # path; {pk} is replaced with a record's id
    admin: str | None  # the admin's page of the same records, if it has one
    samples: dict[str, list[list[float]]] = field(default_factory=dict)  # peer: per round


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def login(base: str, path: str, password: str, timeout: float) -> httpx.Client:
    """A client with a session of the bench superuser, logged in through the login form at
    `path` (GET for the csrftoken cookie and the form's token, then POST)."""
    client = httpx.Client(base_url=base, timeout=timeout)
    page = client.get(path)
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    if page.status_code != 200 or found is None:
        raise SystemExit(f"GET {path}: {page.status_code}, no csrf token:\n{page.text[:500]}")
    answer = client.post(
        path,
        data={
            "username": USERNAME,
            "password": password,
            "csrfmiddlewaretoken": found.group(1),
            "next": "/admin/" if path.startswith("/admin/") else "/console/",
        },
        headers={"Referer": base + path},
    )
    if answer.status_code != 302 or "sessionid" not in client.cookies:
        raise SystemExit(f"POST {path}: {answer.status_code}, not logged in:\n{answer.text[:500]}")
    return client


def timed_get(client: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    response = client.get(path)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise SystemExit(f"GET {path}: {response.status_code}\n{response.text[:1000]}")
    return elapsed


@dataclass
class Export:
    label: str
    query: str
    fmt: str
    records: int
    seconds: float
    first_byte: float
    size: int
    error: str = ""  # the answer was cut off (a worker killed at gunicorn's timeout, say)

    @property
    def rate(self) -> float:
        return self.records / self.seconds


def export(client: httpx.Client, channel: int, label: str, query: str, fmt: str) -> Export:
    path = f"/console/channels/{channel}/failures/export/?format={fmt}" + (
        f"&{query}" if query else ""
    )
    lines = size = 0
    first = None
    error = ""
    started = time.perf_counter()
    try:
        with client.stream("GET", path) as response:
            if response.status_code != 200:
                raise SystemExit(f"GET {path}: {response.status_code}\n{response.read()[:500]}")
            for chunk in response.iter_raw(1 << 16):
                if first is None:
                    first = time.perf_counter() - started
                lines += chunk.count(b"\n")
                size += len(chunk)
    except httpx.HTTPError as failure:
        error = f"{type(failure).__name__}: {failure}"
    seconds = time.perf_counter() - started
    records = lines - 1 if fmt == "csv" else lines  # the CSV's header line
    return Export(label, query, fmt, records, seconds, first or seconds, size, error)


def fmt_ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "--:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or platform.machine(),
    )
    memory = next(
        (
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        ),
        0,
    )
    return f"{os.cpu_count()} cores ({model}), {memory / 1024 / 1024:.1f} GiB memory"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=2_000_000, help="failures in the channel")
    parser.add_argument("--requests", type=int, default=20, help="per page, peer and round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument(
        "--timeout",
        type=int,
        default=600,
        help="gunicorn's worker timeout, s (an export of the whole channel is long)",
    )
    parser.add_argument("--database", default="fi_bench_console")
    parser.add_argument("--reseed", action="store_true", help="seed even when the rows are there")
    parser.add_argument("--sample", type=int, default=200, help="records the record pages go round")
    parser.add_argument(
        "--export-query",
        default="reason_type=mapping",
        help="the export measured every round (about 20 %% of the channel)",
    )
    parser.add_argument(
        "--no-export-full",
        action="store_true",
        help="skip the export of the whole channel (last round)",
    )
    parser.add_argument("--no-export", action="store_true", help="skip the exports")
    args = parser.parse_args(argv)

    created = database.ensure_database(POSTGRES, args.database)
    db_url = database.database_url(POSTGRES, args.database)
    workdir = Path(tempfile.mkdtemp(prefix="fi-bench-console-"))
    tree = copy_working_tree()
    env = django_env(db_url, workdir, tree)
    env.pop("DEBUG", None)
    server = None
    clients: list[httpx.Client] = []
    try:
        check_imports(tree, env)
        log(f"== Database {args.database}{' (created)' if created else ''}: migrate")
        manage(["manage.py", "migrate", "--noinput", "-v", "0"], env, cwd=tree)
        state = None if args.reseed else seeded_rows(db_url)
        if state is None or state[0] != args.rows:
            log(f"== Seeding {args.rows:,} failures into one channel")
            defaults = json.loads(
                manage(
                    ["-m", "bench.auth", "defaults"],
                    {**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
                    cwd=tree,
                )
            )
            seed(db_url, args.rows, defaults)
            manage(["manage.py", "compact_counts"], env, cwd=tree)
            state = seeded_rows(db_url)
        else:
            log(
                f"== {state[0]:,} failures in place (seeded {state[2]:%Y-%m-%d %H:%M} UTC): "
                "no seeding"
            )
            manage(["manage.py", "compact_counts"], env, cwd=tree)
        rows, channel, seeded_at = state

        password = secrets.token_urlsafe(24)
        manage(
            [
                "manage.py",
                "shell",
                "-c",
                "import os; from django.contrib.auth import get_user_model; "
                f"u, _ = get_user_model().objects.get_or_create(username={USERNAME!r}); "
                "u.is_staff = u.is_superuser = u.is_active = True; "
                "u.set_password(os.environ['BENCH_CONSOLE_PASSWORD']); u.save()",
            ],
            {**env, "BENCH_CONSOLE_PASSWORD": password},
            cwd=tree,
        )
        with psycopg.connect(db_url) as connection:
            ids = [
                r[0]
                for r in connection.execute(
                    "SELECT id FROM integrations_failedintegration WHERE channel_id = %s "
                    "ORDER BY id",
                    (channel,),
                )
            ]
            by_state = connection.execute(
                "SELECT count(*) FILTER (WHERE reason_type = 'remote'), "
                "count(*) FILTER (WHERE is_active AND NOT parked AND exhausted "
                "AND (expiration_date IS NULL OR expiration_date > now()) "
                "AND (lease_expires_at IS NULL OR lease_expires_at <= now()) "
                "AND (next_retry_at IS NULL OR next_retry_at > now())), "
                "count(*) FILTER (WHERE created_date >= now() - interval '7 days') "
                "FROM integrations_failedintegration WHERE channel_id = %s",
                (channel,),
            ).fetchone()
        pks = random.Random(SEED).sample(ids, min(args.sample, len(ids)))
        del ids

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--worker-class",
            "sync",
            "--workers",
            str(args.workers),
            "--bind",
            f"127.0.0.1:{port}",
            "--timeout",
            str(args.timeout),
            "--graceful-timeout",
            "10",
            "--log-level",
            "warning",
            "--chdir",
            str(tree),
            "config.wsgi:application",
        ]
        log_path = workdir / "server.log"
        with log_path.open("ab") as output:
            server = subprocess.Popen(
                command,
                cwd=tree,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)

        console = login(base, "/console/login/", password, args.timeout)
        admin = login(base, "/admin/login/", password, args.timeout)
        clients += [console, admin]
        failures = f"/console/channels/{channel}/failures/"
        changelist = "/admin/integrations/failedintegration/"
        pages = [
            Page("overview /console/", "/console/", None),
            Page("failures, no filter (+ group panel)", failures, changelist),
            Page(
                "failures ?reason_type=remote (+ group panel)",
                failures + "?reason_type=remote",
                changelist + "?reason_type__exact=remote",
            ),
            Page("failures ?state=exhausted (+ group panel)", failures + "?state=exhausted", None),
            Page("record detail", failures + "{pk}/", changelist + "{pk}/change/"),
            # Not a console page: a Prometheus scrape, whose gauges read the same counts.
            Page("metrics scrape /metrics", "/metrics", None),
        ]
        peers = {"console": console, "admin": admin}

        def path_of(page: Page, peer: str, step: int) -> str | None:
            path = page.console if peer == "console" else page.admin
            return None if path is None else path.replace("{pk}", str(pks[step % len(pks)]))

        log(
            f"== Server {base} ({args.workers} sync workers); channel {channel}: {rows:,} "
            f"failures, {by_state[0]:,} remote, {by_state[1]:,} exhausted, {by_state[2]:,} "
            "created in the last 7 days"
        )
        log("== Warm-up")
        for page in pages:
            for step in range(3):
                for peer, client in peers.items():
                    path = path_of(page, peer, step)
                    if path:
                        timed_get(client, path)

        exports: list[Export] = []
        step = 0
        for round_ in range(args.repeat):
            order = ["console", "admin"] if round_ % 2 == 0 else ["admin", "console"]
            ordered_pages = pages if round_ % 2 == 0 else pages[::-1]
            for page in ordered_pages:
                times = {peer: [] for peer in order}
                for i in range(args.requests):
                    for peer in order:
                        path = path_of(page, peer, step + i)
                        if path:
                            times[peer].append(timed_get(peers[peer], path))
                for peer, samples in times.items():
                    if samples:
                        page.samples.setdefault(peer, []).append(samples)
            step += args.requests
            summary = ", ".join(
                f"{p.name.split(' (')[0]} {statistics.median(p.samples['console'][-1]):.0f}"
                for p in pages
            )
            log(f"   round {round_ + 1}/{args.repeat} console p50 ms: {summary}")
            if not args.no_export:
                formats = ["csv", "ndjson"] if round_ % 2 == 0 else ["ndjson", "csv"]
                for fmt in formats:
                    done = export(console, channel, "filtered", args.export_query, fmt)
                    exports.append(done)
                    log(
                        f"   export {fmt} ?{args.export_query}: {done.records:,} records in "
                        f"{done.seconds:.1f} s, {done.rate:,.0f}/s"
                        + (f"; CUT OFF: {done.error}" if done.error else "")
                    )
                if round_ == args.repeat - 1 and not args.no_export_full:
                    for fmt in formats:
                        done = export(console, channel, "whole channel", "", fmt)
                        exports.append(done)
                        log(
                            f"   export {fmt} (whole channel): {done.records:,} records in "
                            f"{done.seconds:.1f} s, {done.rate:,.0f}/s"
                            + (f"; CUT OFF: {done.error}" if done.error else "")
                        )
    finally:
        for client in clients:
            client.close()
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)
        shutil.rmtree(tree, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)

    # --- the table
    header = [
        "page",
        "p50 ms",
        "p95 ms",
        "target p95",
        "met?",
        "admin p50",
        "admin p95",
        "console/admin p50",
        "console/admin p95",
    ]
    table = []
    for page in pages:
        rounds = page.samples["console"]
        p50 = statistics.median(statistics.median(s) for s in rounds)
        p95 = statistics.median(percentile(s, 0.95) for s in rounds)
        row = [
            page.name,
            fmt_ms(p50),
            fmt_ms(p95),
            f"< {TARGET_MS:.0f}",
            "yes" if p95 < TARGET_MS else "**no**",
        ]
        if "admin" in page.samples:
            admin_rounds = page.samples["admin"]
            a50 = statistics.median(statistics.median(s) for s in admin_rounds)
            a95 = statistics.median(percentile(s, 0.95) for s in admin_rounds)
            # The ratio of each round's pair (which ran interleaved), median over the rounds.
            r50 = statistics.median(
                statistics.median(c) / statistics.median(a)
                for c, a in zip(rounds, admin_rounds, strict=True)
            )
            r95 = statistics.median(
                percentile(c, 0.95) / percentile(a, 0.95)
                for c, a in zip(rounds, admin_rounds, strict=True)
            )
            row += [fmt_ms(a50), fmt_ms(a95), f"{r50:.2f}", f"{r95:.2f}"]
        else:
            row += ["—", "—", "—", "—"]
        table.append(row)
    pooled = [
        [
            page.name,
            fmt_ms(percentile([t for s in page.samples["console"] for t in s], 0.5)),
            fmt_ms(percentile([t for s in page.samples["console"] for t in s], 0.95)),
            fmt_ms(max(t for s in page.samples["console"] for t in s)),
        ]
        for page in pages
    ]
    export_rows = []
    for label, query in (("filtered", args.export_query), ("whole channel", "")):
        for fmt in ("csv", "ndjson"):
            tried = [e for e in exports if e.label == label and e.fmt == fmt]
            # A run cut off is not a rate: it is shown as such.
            runs = [e for e in tried if not e.error] or tried
            if not runs:
                continue
            rate = statistics.median(e.rate for e in runs)
            cut = len(tried) - len([e for e in tried if not e.error])
            export_rows.append(
                [
                    f"export {fmt} " + (f"?{query}" if query else "(whole channel)"),
                    f"{runs[0].records:,}",
                    f"{statistics.median(e.seconds for e in runs):.1f}",
                    f"{statistics.median(e.first_byte for e in runs) * 1000:.0f}",
                    f"{statistics.median(e.size for e in runs) / runs[0].records:.0f}",
                    f"{rate:,.0f}",
                    f"≥ {EXPORT_TARGET:,}",
                    "**cut off**"
                    if runs[0].error
                    else "yes"
                    if rate >= EXPORT_TARGET
                    else "**no**",
                    f"{len(tried)}" + (f" ({cut} cut off)" if cut else ""),
                ]
            )
    with psycopg.connect(db_url) as connection:
        version = connection.execute("SHOW server_version").fetchone()[0]
    print(f"# Console page server times: {rows:,} failures in one channel\n")
    print("```sh\n.venv/bin/python bench/console.py " + " ".join(argv) + "\n```\n")
    print(
        f"{machine()}; PostgreSQL {version}; gunicorn {args.workers} sync workers; "
        f"{args.repeat} rounds x {args.requests} requests per page and peer, console and "
        f"admin interleaved; rows seeded {seeded_at:%Y-%m-%d %H:%M} UTC, measured "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC.\n"
    )
    print(
        "Wall time per request at concurrency 1 (ms); p50/p95: median over rounds of each "
        "round's; ratios: console time / admin time, median of the rounds' ratios (below 1: "
        "the console is faster).\n"
    )
    print(markdown(header, table))
    print("\nAll requests of all rounds pooled (ms):\n")
    print(markdown(["page", "p50", "p95", "max"], pooled))
    if export_rows:
        print("\nExport (one request, the whole body read; medians over runs):\n")
        print(
            markdown(
                [
                    "export",
                    "records",
                    "s",
                    "first byte ms",
                    "bytes/record",
                    "records/s",
                    "target",
                    "met?",
                    "runs",
                ],
                export_rows,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
