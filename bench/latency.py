"""Latency at scale: the first page of the list (limit 10) with any one filter and any sort,
and a retrieve, on PostgreSQL with 10 million rows of which 2 million are in one channel; and
the memory of a server worker over a cursor walk of that channel.

    bench/latency [--rows 10000000] [--largest-share 0.2] [--requests 30] [--clients 2]

Every request goes through the production server (gunicorn, 2 sync workers) as a client's
would. Each URL's p99 is taken over `--requests` requests from `--clients` concurrent clients
(light concurrency). Results go to `bench/LATENCY.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg

from bench import database
from bench.harness import django_env, free_port, manage

ROOT = Path(__file__).resolve().parents[1]
POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
SORTS = [
    "pk",
    "-pk",
    "version_date",
    "-version_date",
    "expiration_date",
    "-expiration_date",
    "retry_count",
    "-retry_count",
    "created_date",
    "-created_date",
    "modified_date",
    "-modified_date",
]


def filters(content_type: int, object_id: int, log_id: int) -> list[tuple[str, str]]:
    """One of each kind of filter (the FilterSet's parameter families)."""
    return [
        ("none", ""),
        ("reason_type", "reason_type=mapping"),
        ("reason_type__in", "reason_type__in=mapping,channel_app"),
        ("is_active", "is_active=false"),
        ("exhausted", "exhausted=true"),
        ("expired", "expired=true"),
        ("parked", "parked=true"),
        ("content_type", f"content_type={content_type}"),
        ("content_type name", "content_type=orders.orderitem"),
        ("object_id", f"object_id={object_id}"),
        ("object_id__in", f"object_id__in={object_id},{object_id + 1},{object_id + 2}"),
        ("log_id", f"log_id={log_id}"),
        ("integration_action__isnull", "integration_action__isnull=false"),
        ("version_date__gte", "version_date__gte=2026-10-01T00:00:00Z"),
        ("version_date__lt", "version_date__lt=2026-01-15T00:00:00Z"),
        ("expiration_date__gt", "expiration_date__gt=2026-12-01T00:00:00Z"),
        ("created_date__lte", "created_date__lte=2026-02-01T00:00:00Z"),
        ("modified_date__gte", "modified_date__gte=2026-11-20T00:00:00Z"),
        ("retry_count", "retry_count=5"),
        ("max_retry_count__lt", "max_retry_count__lt=2"),
        ("retry_interval__gte", "retry_interval__gte=3500"),
        ("state", "state=parked"),
    ]


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def measure(base: str, key: str, path: str, requests: int, clients: int) -> list[float]:
    """Milliseconds of each of `requests` GETs of `path`, sent by `clients` clients."""

    def one_client(count: int) -> list[float]:
        times = []
        # A slow answer is a measurement, not a failure: wait for it.
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Token {key}"}, timeout=120
        ) as client:
            for _ in range(count):
                started = time.perf_counter()
                response = client.get(path)
                times.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")
        return times

    with ThreadPoolExecutor(clients) as pool:
        shares = [requests // clients + (i < requests % clients) for i in range(clients)]
        return [t for times in pool.map(one_client, shares) for t in times]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--channels", type=int, default=50)
    parser.add_argument("--largest-share", type=float, default=0.2)
    parser.add_argument("--database", default="fi_scale")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--walk-limit", type=int, default=1000)
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--drop", action="store_true")
    args = parser.parse_args()

    database.ensure_database(POSTGRES, args.database)
    db_url = database.database_url(POSTGRES, args.database)
    workdir = Path(tempfile.mkdtemp(prefix="fi-latency-"))
    env = django_env(db_url, workdir)
    service_env = {**env, "DJANGO_SETTINGS_MODULE": "config.settings"}
    manage(["manage.py", "migrate", "--noinput", "-v", "0"], env)
    with psycopg.connect(db_url) as connection:
        state = database.current_state(connection)
    if args.reseed or state != database.SeedState(rows=args.rows, channels=args.channels):
        print(f"== Seeding {args.rows:,} rows ({args.largest_share:.0%} in one channel)")
        defaults = json.loads(manage(["-m", "bench.auth", "defaults"], service_env))
        database.seed(
            db_url,
            rows=args.rows,
            channels=args.channels,
            model_defaults=defaults,
            largest_share=args.largest_share,
        )
    manage(["manage.py", "compact_counts"], env)
    key = manage(["-m", "bench.auth", "ours"], service_env).strip()
    with psycopg.connect(db_url) as connection:
        channel, rows = connection.execute(
            "SELECT channel_id, count(*) FROM integrations_failedintegration "
            "GROUP BY channel_id ORDER BY 2 DESC LIMIT 1"
        ).fetchone()
        total = connection.execute(
            "SELECT count(*) FROM integrations_failedintegration"
        ).fetchone()[0]
        sample = connection.execute(
            "SELECT id, content_type_id, object_id, coalesce(log_id, 1) FROM "
            "integrations_failedintegration WHERE channel_id = %s AND log_id IS NOT NULL "
            "ORDER BY id LIMIT 1 OFFSET 1000000",
            [channel],
        ).fetchone()
        connection.execute(
            "UPDATE integrations_failedintegration SET parked = true "
            "WHERE channel_id = %s AND id %% 1000 = 0",
            [channel],
        )
        connection.commit()
    record_id, content_type, object_id, log_id = sample

    port = free_port()
    server_env = {
        **env,
        "DJANGO_ENV": "production",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECURE_SSL_REDIRECT": "false",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "config.wsgi:application",
        ],
        cwd=ROOT,
        env=server_env,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        list_path = f"/api/v1/channel/{channel}/failed_integrations/"
        results = []
        for name, query in filters(content_type, object_id, log_id):
            for sort in SORTS:
                path = f"{list_path}?limit=10&sort={sort}" + (f"&{query}" if query else "")
                measure(base, key, path, 2, 1)  # warm-up
                times = measure(base, key, path, args.requests, args.clients)
                results.append((name, sort, statistics.median(times), p99(times)))
        retrieve = measure(base, key, f"{list_path}{record_id}/", args.requests * 5, args.clients)

        # A cursor walk of the whole channel, watching the workers' memory.
        workers = [
            int(p)
            for p in subprocess.run(
                ["pgrep", "-P", str(server.pid)], capture_output=True, text=True
            ).stdout.split()
        ]
        before = {pid: rss_kib(pid) for pid in workers}
        walked, pages, started = 0, 0, time.perf_counter()
        peak = dict(before)
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Token {key}"}, timeout=120
        ) as client:
            url = f"{list_path}?cursor=*&limit={args.walk_limit}"
            while url:
                body = client.get(url).json()
                walked += len(body["results"])
                pages += 1
                url = body["next"]
                if pages % 100 == 0:
                    peak = {pid: max(peak[pid], rss_kib(pid)) for pid in workers}
        walk_seconds = time.perf_counter() - started
        after = {pid: rss_kib(pid) for pid in workers}
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        if args.drop:
            database.drop_database(POSTGRES, args.database)

    worst = sorted(results, key=lambda r: -r[3])
    over = [r for r in results if r[3] >= 50]
    lines = [
        "# Latency at scale",
        "",
        "```sh",
        "bench/latency " + " ".join(sys.argv[1:]),
        "```",
        "",
        f"{total:,} rows; channel {channel} holds {rows:,}. Production server (gunicorn, 2 sync "
        f"workers) on PostgreSQL {database.server_version(POSTGRES)}; {os.cpu_count()} cores "
        f"({platform.processor() or platform.machine()}). Each URL: {args.requests} requests "
        f"from {args.clients} concurrent clients after a warm-up; times in ms, client-side.",
        "",
        f"- **retrieve**: p50 {statistics.median(retrieve):.1f}, p99 {p99(retrieve):.1f}",
        f"- **first page, limit 10**: {len(results)} filter x sort combinations; "
        f"{len(results) - len(over)} under 50 ms at p99, {len(over)} over.",
        f"- **cursor walk** of the channel, {args.walk_limit} a page: {walked:,} records in "
        f"{pages} pages, {walk_seconds:.0f} s; worker RSS before/peak/after (KiB): "
        + "; ".join(f"{before[p]:,}/{peak[p]:,}/{after[p]:,}" for p in workers),
        "",
        "| filter | sort | p50 | p99 |",
        "|---|---|--:|--:|",
        *(f"| {n} | {s} | {p50:.1f} | {p99_:.1f} |" for n, s, p50, p99_ in worst),
    ]
    report = "\n".join(lines) + "\n"
    (ROOT / "bench" / "LATENCY.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
