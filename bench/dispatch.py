"""Dispatch throughput of the retry engine: attempts per second with 1, 2 and 4 worker
processes against a fast local receiver, beside the receiver's own capacity measured with wrk
in the same run.

    bench/dispatch [--records 20000] [--workers 1,2,4] [--concurrency 16] [--batch 100]

It makes its own PostgreSQL database (`fi_dispatch`, dropped at the end unless --keep).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
BODY_BYTES = 900  # about the size of a retry request's JSON


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url(name: str) -> str:
    return re.sub(r"/[^/]*$", f"/{name}", ADMIN_URL)


def manage(env: dict, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, **kwargs
    )


def receiver_count(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=5) as response:
        return int(response.read())


def receiver_capacity(port: int, seconds: int) -> float:
    """Requests/s the receiver answers to wrk (POSTs of a retry request's size, keep-alive)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\n'
            f'wrk.body = string.rep("x", {BODY_BYTES})\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
    output = subprocess.run(
        ["wrk", "-t1", "-c16", f"-d{seconds}s", "-s", script.name, f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script.name)
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def seed(url: str, channel_id: int, content_type_id: int, n: int) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("DELETE FROM integrations_retryattempt")
        connection.execute("DELETE FROM integrations_failedintegration")
        with connection.cursor().copy(
            "COPY integrations_failedintegration (channel_id, content_type_id, object_id, "
            "reason_type, version_date, is_active, retry_count, max_retry_count, "
            "retry_interval, created_date, modified_date, next_retry_at, parked, resolution, "
            "last_error, lease_owner) FROM STDIN"
        ) as copy:
            for i in range(n):
                copy.write_row(
                    (
                        channel_id,
                        content_type_id,
                        i,
                        "remote",
                        "2025-01-01",
                        True,
                        1,
                        5,
                        0,
                        "2025-01-01",
                        "2025-01-01",
                        "2025-01-01",
                        False,
                        "",
                        "",
                        "",
                    )
                )
        connection.execute("VACUUM ANALYZE integrations_failedintegration")


def check_exactly_once(url: str, records: int, sent: int) -> None:
    """Every record resolved by exactly one successful attempt, and every request the receiver
    counted is an attempt the engine recorded: a request that failed (a timeout on a busy
    machine, say) is retried, as it must be, and is counted as its own attempt."""
    with psycopg.connect(url) as connection:
        outcomes = dict(
            connection.execute(
                "SELECT outcome, count(*) FROM integrations_retryattempt GROUP BY outcome"
            ).fetchall()
        )
        resolved_twice = connection.execute(
            "SELECT count(*) FROM (SELECT failed_integration_id FROM integrations_retryattempt "
            "WHERE outcome = 'success' GROUP BY 1 HAVING count(*) > 1) AS twice"
        ).fetchone()[0]
    if outcomes.get("success") != records or resolved_twice:
        raise SystemExit(
            f"{records} records, attempts by outcome {outcomes}, {resolved_twice} resolved twice"
        )
    if sent != sum(outcomes.values()):
        raise SystemExit(
            f"{sent} requests received for {sum(outcomes.values())} attempts {outcomes}"
        )
    if sent != records:
        print(f"   ({sent - records} attempts retried after a failure: {outcomes})")


def run_workers(env: dict, count: int, args: argparse.Namespace, url: str) -> float:
    """Seconds for `count` worker processes to resolve every record."""
    command = [
        sys.executable,
        "manage.py",
        "run_worker",
        "--once",
        "--concurrency",
        str(args.concurrency),
        "--batch",
        str(args.batch),
        "--poll",
        "0.05",
        "--housekeeping",
        "3600",
    ]
    started = time.perf_counter()
    workers = [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        for _ in range(count)
    ]
    for worker in workers:
        worker.wait(timeout=1800)
    elapsed = time.perf_counter() - started
    with psycopg.connect(url) as connection:
        left = connection.execute(
            "SELECT count(*) FROM integrations_failedintegration WHERE is_active"
        ).fetchone()[0]
    if left:
        raise SystemExit(f"{left} records were not resolved")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--capacity-seconds", type=int, default=5)
    parser.add_argument("--database", default="fi_dispatch")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]

    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{args.database}"')
        admin.execute(f'CREATE DATABASE "{args.database}"')
    url = database_url(args.database)
    port = free_port()
    receiver = subprocess.Popen([sys.executable, str(ROOT / "bench" / "receiver.py"), str(port)])
    env = {
        **os.environ,
        "DJANGO_ENV": "embedded",
        "DATABASE_URL": url,
        "DATA_DIR": tempfile.mkdtemp(prefix="fi-dispatch-"),
        "LOG_LEVEL": "ERROR",
    }
    try:
        manage(env, "migrate", "-v0")
        setup = (
            "from integrations.models import Channel;"
            "from django.contrib.contenttypes.models import ContentType;"
            f"c = Channel.objects.create(name='bench', retry_endpoint='http://127.0.0.1:{port}/');"
            "t = ContentType.objects.get(app_label='products', model='product');"
            "print(c.pk, t.pk)"
        )
        out = manage(
            env, "shell", "-v", "0", "-c", setup, capture_output=True, text=True
        ).stdout.split()
        channel_id, content_type_id = int(out[-2]), int(out[-1])
        time.sleep(0.5)
        capacity = statistics.median(
            receiver_capacity(port, args.capacity_seconds) for _ in range(args.repeat)
        )
        rates: dict[int, float] = {}
        for count in counts:
            runs = []
            for _ in range(args.repeat):
                seed(url, channel_id, content_type_id, args.records)
                before = receiver_count(port)
                elapsed = run_workers(env, count, args, url)
                sent = receiver_count(port) - before
                check_exactly_once(url, args.records, sent)
                runs.append(args.records / elapsed)
            rates[count] = statistics.median(runs)
    finally:
        receiver.terminate()
        if not args.keep:
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        shutil.rmtree(env["DATA_DIR"], ignore_errors=True)

    lines = [
        "| workers | attempts/s (median) | / receiver capacity | scaling vs 1 worker |",
        "|---:|---:|---:|---:|",
    ]
    for count, rate in rates.items():
        lines.append(
            f"| {count} | {rate:,.0f} | {rate / capacity:.2f}x | {rate / rates[counts[0]]:.2f}x |"
        )
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    report = "\n".join(
        [
            f"Receiver capacity (wrk, keep-alive, {BODY_BYTES}-byte POSTs): {capacity:,.0f} req/s",
            f"{args.records} due records per run, median of {args.repeat} runs; worker "
            f"--concurrency {args.concurrency} --batch {args.batch}; machine: {machine}",
            "",
            *lines,
        ]
    )
    print(report)
    (ROOT / "bench" / "DISPATCH.md").write_text(
        "# Dispatch benchmark\n\n```sh\nbench/dispatch "
        + " ".join(sys.argv[1:])
        + "\n```\n\n"
        + report
        + "\n"
    )


if __name__ == "__main__":
    main()
