"""Dispatch throughput of the retry engine: attempts per second with 1, 2 and 4 worker
processes against a fast local receiver, beside the receiver's own capacity measured with wrk
in the same run.

    bench/dispatch [--records 20000] [--workers 1,2,4] [--concurrency 16] [--batch 100]

With --ab, the same dispatch workload instead runs once per HTTP client candidate for the
worker's POSTs (the poster on http.client, httpx.Client and urllib3's PoolManager, each with
keep-alive connections), in rounds that alternate them (A B C A B C ...), and compares their
median throughput and the workers' CPU time per attempt:

    bench/dispatch --ab [--rounds 5] [--ab-records 4000] [--ab-workers 2]

It makes its own PostgreSQL database (`fi_dispatch`, dropped at the end unless --keep) and
writes its section of bench/DISPATCH.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
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
from urllib.parse import urlsplit

import httpx
import psycopg
import urllib3

from integrations.dispatch.poster import READ_LIMIT, Answer, PostFailed, PostRefused, PostTimeout

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
BODY_BYTES = 900  # about the size of a retry request's JSON
CLIENTS = ("http.client", "httpx", "urllib3")


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


def receiver_keys(port: int) -> list[str]:
    """The Idempotency-Key of every attempt the receiver got, in their order."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/keys", timeout=30) as response:
        return response.read().decode().split("\n") if response.length else []


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


# The outcomes of attempts that certainly reached the app (it answered them).
ANSWERED = ("success", "http_error", "throttled")


def check_exactly_once(url: str, records: int, received: list[str], fail_first: int) -> None:
    """Matches the attempts the engine recorded with the requests the receiver got, one to one
    by their idempotency keys: no request received twice or not recorded, no answered attempt
    that never arrived; every record resolved by exactly one success after `fail_first`
    refused attempts. A request that failed on its way (a timeout on a busy machine, say) may
    or may not have arrived, and is retried as its own attempt."""
    with psycopg.connect(url) as connection:
        attempts = connection.execute(
            "SELECT idempotency_key, outcome, failed_integration_id FROM integrations_retryattempt"
        ).fetchall()
    recorded = {key: outcome for key, outcome, _ in attempts}
    problems = []
    twice = len(received) - len(set(received))
    if twice:
        problems.append(f"{twice} requests received more than once")
    unknown = set(received) - set(recorded)
    if unknown:
        problems.append(f"{len(unknown)} requests received that no attempt recorded")
    lost = {key for key, outcome in recorded.items() if outcome in ANSWERED} - set(received)
    if lost:
        problems.append(f"{len(lost)} attempts recorded as answered that never arrived")
    successes: dict[int, int] = {}
    answered_failures: dict[int, int] = {}
    for _, outcome, record in attempts:
        if outcome == "success":
            successes[record] = successes.get(record, 0) + 1
        elif outcome == "http_error":
            answered_failures[record] = answered_failures.get(record, 0) + 1
    if len(successes) != records or set(successes.values()) != {1}:
        problems.append(f"{len(successes)} of {records} records resolved, some more than once")
    wrong = sum(1 for record in successes if answered_failures.get(record, 0) != fail_first)
    if wrong:
        problems.append(f"{wrong} records without exactly {fail_first} failed attempts first")
    outcomes: dict[str, int] = {}
    for outcome in recorded.values():
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    if problems:
        raise SystemExit(f"exactly once: {'; '.join(problems)} (attempts by outcome {outcomes})")
    print(
        f"   exactly once: {len(received)} requests matched {len(recorded)} attempts by key "
        f"({outcomes})",
        flush=True,
    )


def worker_command(args: argparse.Namespace, client: str | None) -> list[str]:
    options = [
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
    if client is None:
        return [sys.executable, "manage.py", "run_worker", *options]
    return [sys.executable, "-m", "bench.dispatch", "--worker-client", client, *options]


CPU_LINE = "dispatch CPU seconds: "


def run_workers(
    env: dict, count: int, args: argparse.Namespace, url: str, client: str | None = None
) -> tuple[float, float]:
    """Seconds for `count` worker processes to resolve every record, and (with a candidate
    client) the CPU seconds the workers spent dispatching."""
    command = worker_command(args, client)
    started = time.perf_counter()
    workers = [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    outputs = [worker.communicate(timeout=1800)[0] for worker in workers]
    elapsed = time.perf_counter() - started
    if any(worker.returncode for worker in workers):
        raise SystemExit(f"a worker failed: {command}")
    cpu = sum(
        float(line.removeprefix(CPU_LINE))
        for output in outputs
        for line in output.splitlines()
        if line.startswith(CPU_LINE)
    )
    with psycopg.connect(url) as connection:
        left = connection.execute(
            "SELECT count(*) FROM integrations_failedintegration WHERE is_active"
        ).fetchone()[0]
    if left:
        raise SystemExit(f"{left} records were not resolved")
    return elapsed, cpu


def dispatch_seconds(url: str) -> float:
    """From the first attempt's start to the last one's end: the dispatching itself, without
    the workers' start-up (importing Django and connecting), which is the same for every
    client and would only dilute their difference."""
    with psycopg.connect(url) as connection:
        first, last = connection.execute(
            "SELECT min(started_at), max(finished_at) FROM integrations_retryattempt"
        ).fetchone()
    return (last - first).total_seconds()


# --- the candidates of the A/B ---------------------------------------------------------------
#
# Each is a drop-in for the worker's Poster: post(url, body, headers) -> Answer, raising the
# poster's PostTimeout / PostRefused / PostFailed, and close(). Each keeps connections alive
# between requests, verifies certificates, follows no redirect, times out on connecting and on
# every read, and keeps at most READ_LIMIT bytes of an answer. The worker process is started by
# `python -m bench.dispatch --worker-client NAME`, which puts the candidate in the Poster's
# place and runs `manage.py run_worker`, reporting the CPU time the process spent in it.


def validated(url: str) -> None:
    """Refuses what the poster refuses before connecting: not http(s), no host, a bad port."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PostRefused(f"not an http(s) URL: {url!r}")
    try:
        _ = parts.port
    except ValueError as exc:
        raise PostRefused(f"bad port in {url!r}") from exc


class HttpxPoster:
    """httpx.Client: one pool shared by the worker's threads, connections kept alive."""

    def __init__(self, *, timeout: float, connections: int = 64):
        self.client = httpx.Client(
            timeout=timeout,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        validated(url)
        try:
            with self.client.stream("POST", url, content=body, headers=headers) as response:
                kept, size = [], 0
                for chunk in response.iter_raw():
                    kept.append(chunk)
                    size += len(chunk)
                    if size >= READ_LIMIT:
                        break  # the rest is dropped with its connection
                text = b"".join(kept)[:READ_LIMIT]
                return Answer(response.status_code, text.decode("utf-8", "replace"))
        except httpx.TimeoutException as exc:
            raise PostTimeout(str(exc) or "timed out") from exc
        except (httpx.ConnectError, httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise PostRefused(str(exc)) from exc
        except httpx.HTTPError as exc:
            raise PostFailed(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self.client.close()


class Urllib3Poster:
    """urllib3.PoolManager: a pool per origin shared by the worker's threads, keep-alive."""

    def __init__(self, *, timeout: float, connections: int = 64):
        self.pool = urllib3.PoolManager(
            maxsize=connections,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            retries=False,
        )

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        errors = urllib3.exceptions
        validated(url)
        try:
            response = self.pool.request(
                "POST",
                url,
                body=body,
                headers=headers,
                redirect=False,
                preload_content=False,
                decode_content=False,
            )
            text = response.read(READ_LIMIT)
            if response.length_remaining:
                response.close()  # the rest is dropped with its connection
            response.release_conn()
            return Answer(response.status, text.decode("utf-8", "replace"))
        except errors.NewConnectionError as exc:
            raise PostRefused(str(exc)) from exc
        except errors.TimeoutError as exc:
            raise PostTimeout(str(exc) or "timed out") from exc
        except errors.LocationValueError as exc:
            raise PostRefused(str(exc)) from exc
        except (errors.HTTPError, OSError) as exc:
            raise PostFailed(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self.pool.clear()


def candidate(name: str):
    if name == "http.client":
        from integrations.dispatch.poster import Poster

        return Poster
    return {"httpx": HttpxPoster, "urllib3": Urllib3Poster}[name]


def run_worker_with(client: str, argv: list[str]) -> None:
    """`manage.py run_worker ARGV` with the candidate `client` making the POSTs."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from integrations.dispatch import worker

    worker.Poster = candidate(client)
    started = time.process_time()
    call_command("run_worker", *argv)
    print(f"{CPU_LINE}{time.process_time() - started:.3f}", flush=True)


# --- the report ------------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f", {int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
    with psycopg.connect(ADMIN_URL) as connection:
        server = connection.execute("SHOW server_version").fetchone()[0].split(" ")[0]
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, PostgreSQL {server}; the workers, PostgreSQL and "
        "the receiver share the cores"
    )


def library_versions() -> str:
    return f"httpx {httpx.__version__}, urllib3 {urllib3.__version__}"


def write_section(path: Path, title: str, command: str, report: str) -> None:
    """Replaces the section `title` of the report at `path` (or adds it), leaving the others."""
    text = path.read_text() if path.exists() else ""
    sections = re.split(r"(?m)^(?=## )", text)
    heading = sections[0] if sections and not sections[0].startswith("## ") else ""
    heading = heading if heading.startswith("# ") else "# Dispatch benchmark\n\n"
    kept = [s.rstrip() + "\n\n" for s in sections if s.startswith("## ")]
    new = f"## {title}\n\n```sh\n{command}\n```\n\n{report}\n\n"
    for i, section in enumerate(kept):
        if section.startswith(f"## {title}\n"):
            kept[i] = new
            break
    else:
        kept.append(new)
    path.write_text((heading + "".join(kept)).rstrip() + "\n")


def scaling(env, url, port, channel_id, content_type_id, args) -> tuple[str, str]:
    counts = [int(n) for n in args.workers.split(",")]
    capacity = statistics.median(
        receiver_capacity(port, args.capacity_seconds) for _ in range(args.repeat)
    )
    rates: dict[int, float] = {}
    for count in counts:
        runs = []
        for _ in range(args.repeat):
            seed(url, channel_id, content_type_id, args.records)
            before = len(receiver_keys(port))
            elapsed, _ = run_workers(env, count, args, url)
            check_exactly_once(url, args.records, receiver_keys(port)[before:], args.fail_first)
            runs.append(args.records / elapsed)
        rates[count] = statistics.median(runs)
    lines = [
        "| workers | attempts/s (median) | / receiver capacity | scaling vs 1 worker |",
        "|---:|---:|---:|---:|",
    ]
    for count, rate in rates.items():
        lines.append(
            f"| {count} | {rate:,.0f} | {rate / capacity:.2f}x | {rate / rates[counts[0]]:.2f}x |"
        )
    return "Worker scaling", "\n".join(
        [
            f"Receiver capacity (wrk, keep-alive, {BODY_BYTES}-byte POSTs): {capacity:,.0f} req/s",
            f"{args.records} due records per run, median of {args.repeat} runs; worker "
            f"--concurrency {args.concurrency} --batch {args.batch}; machine: {machine()}",
            "",
            *lines,
        ]
    )


def ab(env, url, port, channel_id, content_type_id, args) -> tuple[str, str]:
    started, load_before = time.monotonic(), os.getloadavg()[0]
    clients = args.clients.split(",")
    rates: dict[str, list[float]] = {c: [] for c in clients}
    cpu: dict[str, list[float]] = {c: [] for c in clients}
    for number in range(1, args.rounds + 1):
        for client in clients:
            seed(url, channel_id, content_type_id, args.ab_records)
            before = len(receiver_keys(port))
            _, spent = run_workers(env, args.ab_workers, args, url, client)
            keys = receiver_keys(port)[before:]
            check_exactly_once(url, args.ab_records, keys, args.fail_first)
            rates[client].append(args.ab_records / dispatch_seconds(url))
            cpu[client].append(spent / args.ab_records * 1e6)
            print(
                f"round {number} {client:12} {rates[client][-1]:7,.0f} attempts/s "
                f"{cpu[client][-1]:6,.0f} us CPU/attempt",
                flush=True,
            )
    median = {c: statistics.median(rates[c]) for c in clients}
    median_cpu = {c: statistics.median(cpu[c]) for c in clients}
    lines = [
        "| client | attempts/s (median) | runs (attempts/s) | worker CPU µs/attempt (median) | "
        + " | ".join(f"vs {c}" for c in clients)
        + " |",
        "|---|---:|---|---:|" + "---:|" * len(clients),
    ]
    for client in sorted(clients, key=median.get, reverse=True):
        runs = ", ".join(f"{r:,.0f}" for r in rates[client])
        ratios = " | ".join(
            "" if other == client else f"{median[client] / median[other]:.2f}x" for other in clients
        )
        lines.append(
            f"| {client} | {median[client]:,.0f} | {runs} | {median_cpu[client]:,.0f} | {ratios} |"
        )
    best = max(clients, key=median.get)
    wins = ", ".join(
        f"than {other} in {sum(a > b for a, b in zip(rates[best], rates[other], strict=True))} "
        f"of {args.rounds} rounds"
        for other in clients
        if other != best
    )
    return "HTTP client A/B", "\n".join(
        [
            f"{args.ab_records} due records per run, {args.ab_workers} worker processes "
            f"(--concurrency {args.concurrency} --batch {args.batch}), {args.rounds} rounds "
            f"alternating {' '.join(clients)}; attempts/s over the dispatch (first attempt's "
            "start to last one's end); worker CPU: the worker processes' user + system time in "
            "`run_worker` (start-up not included) over the attempts.",
            "",
            f"Machine: {machine()}; {library_versions()}; {date()}; the rounds took "
            f"{time.monotonic() - started:.0f} s, the 1-minute load average was "
            f"{load_before:.1f} before them and {os.getloadavg()[0]:.1f} after (other work on "
            "the machine shows there; the alternating rounds spread it over the candidates).",
            "",
            *lines,
            "",
            f"`vs X`: the row's median attempts/s over X's. Fastest by median: {best}"
            + (f"; faster {wins}." if wins else "."),
        ]
    )


def date() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--capacity-seconds", type=int, default=5)
    parser.add_argument("--ab", action="store_true", help="compare the HTTP client candidates")
    parser.add_argument("--clients", default=",".join(CLIENTS), help="the A/B's candidates")
    parser.add_argument("--rounds", type=int, default=5, help="A/B rounds")
    parser.add_argument("--ab-records", type=int, default=4000, help="due records per A/B run")
    parser.add_argument("--ab-workers", type=int, default=2, help="worker processes per A/B run")
    parser.add_argument(
        "--fail-first",
        type=int,
        default=0,
        help="the receiver answers 422 to the first N attempts of each record (0)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "bench" / "DISPATCH.md",
        help="the report whose section it writes (bench/DISPATCH.md)",
    )
    parser.add_argument("--database", default="fi_dispatch")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    if args.ab and (set(args.clients.split(",")) - set(CLIENTS) or args.rounds < 1):
        parser.error(f"--clients: a subset of {','.join(CLIENTS)}; --rounds >= 1")

    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{args.database}"')
        admin.execute(f'CREATE DATABASE "{args.database}"')
    url = database_url(args.database)
    port = free_port()
    receiver = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "receiver.py"), str(port), str(args.fail_first)]
    )
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
        run = ab if args.ab else scaling
        title, report = run(env, url, port, channel_id, content_type_id, args)
    finally:
        receiver.terminate()
        if not args.keep:
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        shutil.rmtree(env["DATA_DIR"], ignore_errors=True)

    print(report)
    write_section(args.output, title, " ".join(["bench/dispatch", *sys.argv[1:]]), report)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker-client"]:
        run_worker_with(sys.argv[2], sys.argv[3:])
    else:
        main()
