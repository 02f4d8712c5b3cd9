"""An outage, side by side: the retry engine against the obvious Celery implementation.

    bench/outage [--records 10000] [--repeat 1] [--peers ours,celery]

Ten channels with `--records` due records each, in a database made afresh for every run.
Channel A's app refuses connections for the first `--down` seconds (60) and then recovers;
channel B's app answers in `--b-latency` seconds (0.2) and answers 429 (`Retry-After: 1`) above
`--b-rate` requests a second (50); the other eight answer at once. Each peer gets 4 worker
processes (`--workers`) of 16 threads (`--concurrency`):

* `ours`: `manage.py run_worker`, the channels as an operator would set them up: A with a rate
  limit (`--a-rate-limit`, 100/s: its drain after the recovery), B with none (the engine learns
  B's limit from its 429s), the records' retries 1 s apart, doubling (a `RetryPolicy`);
* `celery`: bench/peers/celery_outage.py, one task per record, `autoretry_for` with
  `retry_backoff` and the same five attempts, on Redis.

Every peer runs the scenario twice a round, with A and B and without them (the eight healthy
channels alone: the isolation's yardstick); rounds alternate the peers. The clock starts when the
workers are started (after the records are in: seeded for ours, enqueued for Celery). The apps
(bench/outage_receiver.py) count what they get. The report goes to bench/OUTAGE.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg
import redis

from bench.dispatch import ADMIN_URL, database_url, date, free_port, machine, manage

ROOT = Path(__file__).resolve().parents[1]
HEALTHY = [f"H{n}" for n in range(1, 9)]
CELERY_REDIS = "redis://127.0.0.1:6379/15"


class Scenario:
    def __init__(self, args: argparse.Namespace, *, with_a_and_b: bool):
        self.args = args
        self.with_a_and_b = with_a_and_b
        self.channels = (["A", "B"] if with_a_and_b else []) + HEALTHY

    def mode(self, name: str) -> str:
        if name == "A":
            return f"down:{self.args.down}"
        if name == "B":
            return f"limited:{self.args.b_rate}:{self.args.b_latency}"
        return "ok"


class Receiver:
    """bench/outage_receiver.py on fixed ports, started afresh for every run."""

    def __init__(self, ports: dict[str, int]):
        self.ports = ports
        self.control = free_port()
        self.process: subprocess.Popen | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}/"

    def start(self, scenario: Scenario) -> None:
        specs = [f"{n}:{self.ports[n]}:{scenario.mode(n)}" for n in scenario.channels]
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "outage_receiver.py"), str(self.control), *specs]
        )
        for _ in range(100):
            try:
                self.call("GET", "/ready")
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("the receiver did not start")

    def call(self, method: str, path: str) -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.control}{path}",
            method=method,
            data=b"" if method == "POST" else None,
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait()
            self.process = None


def fresh_database(name: str, *, template: str | None = None) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        made_from = f' TEMPLATE "{template}"' if template else ""
        admin.execute(f'CREATE DATABASE "{name}"{made_from}')


def stop_all(processes: list[subprocess.Popen], sig: int = signal.SIGTERM) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(sig)
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def outcome(scenario: Scenario, stats: dict, exhausted: dict, refused: int, elapsed: float) -> dict:
    apps = stats["apps"]
    args = scenario.args
    healthy_last = [apps[n]["last_success"] or elapsed for n in HEALTHY]
    result = {
        "healthy_drained": max(healthy_last),
        "exhausted": {n: exhausted.get(n, 0) for n in scenario.channels},
        "succeeded_twice": sum(apps[n]["records_succeeded_twice"] for n in scenario.channels),
        "not_delivered": sum(
            args.records - apps[n]["records_succeeded"] - exhausted.get(n, 0)
            for n in scenario.channels
        ),
    }
    if scenario.with_a_and_b:
        b, a = apps["B"], apps["A"]
        result |= {
            "a_refused": refused,
            "b_throttled_after_first": max(b["statuses"].get("429", 0) - 1, 0),
            "b_drained": b["last_success"] if b["records_succeeded"] == args.records else None,
            "a_drained_after_recovery": (
                a["last_success"] - args.down if a["records_succeeded"] == args.records else None
            ),
        }
    return result


# --- ours -------------------------------------------------------------------------------------


class Ours:
    name = "ours"

    def __init__(self, args: argparse.Namespace, receiver: Receiver, env: dict, template: str):
        """`template`: the migrated database every run's database is made from afresh (so that
        no run inherits another's dead rows or counts); the channels are made in it here."""
        self.args, self.receiver, self.env, self.template = args, receiver, env, template
        self.url = env["DATABASE_URL"]
        channels = ",".join(f"('{n}', '{receiver.url(n)}')" for n in ["A", "B", *HEALTHY])
        setup = (
            "from integrations.models import Channel, RetryPolicy;"
            "from django.contrib.contenttypes.models import ContentType;"
            "import json;"
            "ids = {};"
            f"\nfor name, endpoint in [{channels}]:"
            "\n    c = Channel.objects.create(name=name, retry_endpoint=endpoint);"
            "\n    RetryPolicy.objects.create(channel=c, reason_type='remote', auto_retry=True,"
            " backoff='exponential', backoff_factor=2, max_delay=600);"
            "\n    ids[name] = c.pk"
            "\nprint(json.dumps({'channels': ids, 'content_type':"
            " ContentType.objects.get(app_label='products', model='product').pk}))"
        )
        in_template = {**env, "DATABASE_URL": database_url(template)}
        out = manage(in_template, "shell", "-v", "0", "-c", setup, capture_output=True, text=True)
        made = json.loads(out.stdout.strip().splitlines()[-1])
        self.channel_ids, self.content_type = made["channels"], made["content_type"]

    def prepare(self, scenario: Scenario) -> None:
        fresh_database(self.args.database, template=self.template)
        with psycopg.connect(self.url, autocommit=True) as db:
            a_limit = self.args.a_rate_limit
            db.execute(
                "UPDATE integrations_channel SET dispatch_held_until = NULL, max_concurrency = "
                "NULL, rate_limit = CASE WHEN name = 'A' THEN %s::int END",
                (a_limit,),
            )
            base = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
            with db.cursor().copy(
                "COPY integrations_failedintegration (channel_id, content_type_id, object_id, "
                "reason_type, version_date, is_active, retry_count, max_retry_count, "
                "retry_interval, created_date, modified_date, next_retry_at, parked, resolution, "
                "last_error, lease_owner) FROM STDIN"
            ) as copy:
                for name in scenario.channels:
                    for i in range(self.args.records):
                        due = base + dt.timedelta(milliseconds=i)
                        channel = self.channel_ids[name]
                        row = [channel, self.content_type, i, "remote", base, True, 0, 5, 1]
                        copy.write_row([*row, base, base, due, False, "", "", ""])
            db.execute("VACUUM ANALYZE integrations_failedintegration")

    def remaining(self) -> int:
        with psycopg.connect(self.url) as db:
            return db.execute(
                "SELECT count(*) FROM integrations_failedintegration WHERE is_active AND NOT "
                "exhausted"
            ).fetchone()[0]

    def run(self, scenario: Scenario) -> dict:
        self.prepare(scenario)
        self.receiver.start(scenario)
        command = [sys.executable, "manage.py", "run_worker"]
        command += ["--concurrency", str(self.args.concurrency), "--batch", str(self.args.batch)]
        command += ["--poll", "0.05", "--lease", "30", "--timeout", "5"]
        self.receiver.call("POST", "/start")
        started = time.monotonic()
        workers = [
            subprocess.Popen(command, cwd=ROOT, env=self.env) for _ in range(self.args.workers)
        ]
        try:
            while self.remaining() and time.monotonic() - started < self.args.timeout:
                time.sleep(0.5)
            elapsed = time.monotonic() - started
            stats = self.receiver.call("GET", "/stats")
        finally:
            stop_all(workers)
            self.receiver.stop()
        names = {pk: name for name, pk in self.channel_ids.items()}
        with psycopg.connect(self.url) as db:
            exhausted = {
                names[pk]: n
                for pk, n in db.execute(
                    "SELECT channel_id, count(*) FROM integrations_failedintegration "
                    "WHERE is_active AND exhausted GROUP BY 1"
                )
            }
            refused = db.execute(
                "SELECT count(*) FROM integrations_retryattempt a JOIN "
                "integrations_failedintegration f ON f.id = a.failed_integration_id "
                "WHERE f.channel_id = %s AND a.outcome = 'refused'",
                (self.channel_ids["A"],),
            ).fetchone()[0]
            learned = db.execute(
                "SELECT learned_rate FROM integrations_channeldispatch WHERE channel_id = %s",
                (self.channel_ids["B"],),
            ).fetchone()
            # B's attempts by 10 s from the first: how many started, and their mean time in
            # flight (from the claim's start to the outcome written), for the round's log.
            timeline = db.execute(
                "WITH b AS (SELECT a.started_at, a.finished_at FROM integrations_retryattempt a "
                "JOIN integrations_failedintegration f ON f.id = a.failed_integration_id "
                "WHERE f.channel_id = %s) SELECT floor(extract(epoch FROM b.started_at - "
                "(SELECT min(started_at) FROM b)) / 10)::int, count(*), round(avg(extract(epoch "
                "FROM b.finished_at - b.started_at))::numeric, 2)::float FROM b GROUP BY 1 "
                "ORDER BY 1",
                (self.channel_ids["B"],),
            ).fetchall()
        result = outcome(scenario, stats, exhausted, refused, elapsed)
        if scenario.with_a_and_b:
            result["b_learned_rate"] = learned[0] if learned else None
            result["b_per_10s"] = [[count, in_flight] for _, count, in_flight in timeline]
        return result


# --- the Celery peer --------------------------------------------------------------------------


class CeleryPeer:
    name = "celery"

    def __init__(self, args: argparse.Namespace, receiver: Receiver):
        self.args, self.receiver = args, receiver
        self.env = {**os.environ, "CELERY_OUTAGE_BROKER": CELERY_REDIS}
        self.redis = redis.Redis.from_url(CELERY_REDIS)

    def enqueue(self, scenario: Scenario) -> None:
        os.environ["CELERY_OUTAGE_BROKER"] = CELERY_REDIS
        from bench.peers.celery_outage import retry_record

        with retry_record.app.producer_or_acquire() as producer:
            for i in range(self.args.records):
                for index, name in enumerate(scenario.channels):
                    record = {"pk": index * 10_000_000 + i, "channel": name, "object_id": i}
                    body = json.dumps(
                        {"event": "failed_integration.retry", "failed_integration": record}
                    )
                    retry_record.apply_async(
                        kwargs={"channel": name, "url": self.receiver.url(name), "body": body},
                        producer=producer,
                    )

    def run(self, scenario: Scenario) -> dict:
        self.redis.flushdb()
        self.enqueue(scenario)
        self.receiver.start(scenario)
        command = [sys.executable, "-m", "celery", "-A", "bench.peers.celery_outage", "worker"]
        command += ["--pool", "threads", "--concurrency", str(self.args.concurrency)]
        command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        command += ["--loglevel", "ERROR"]
        total = self.args.records * len(scenario.channels)
        self.receiver.call("POST", "/start")
        started = time.monotonic()
        workers = [
            subprocess.Popen(
                [*command, "-n", f"outage{n}@%h"],
                cwd=ROOT,
                env=self.env,
                stdout=subprocess.DEVNULL,
            )
            for n in range(self.args.workers)
        ]
        try:
            while (
                int(self.redis.get("finished") or 0) < total
                and time.monotonic() - started < self.args.timeout
            ):
                time.sleep(0.5)
            elapsed = time.monotonic() - started
            stats = self.receiver.call("GET", "/stats")
        finally:
            stop_all(workers, signal.SIGKILL)
            self.receiver.stop()
        exhausted = {n: int(self.redis.get(f"exhausted:{n}") or 0) for n in scenario.channels}
        refused = int(self.redis.get("refused:A") or 0)
        self.redis.flushdb()
        return outcome(scenario, stats, exhausted, refused, elapsed)


# --- the report -------------------------------------------------------------------------------


def median_of(runs: list[dict], key: str, sub: str | None = None):
    values = [r[key][sub] if sub else r[key] for r in runs]
    if any(v is None for v in values):
        return None
    return statistics.median(values)


def report(args, results: dict[str, dict[bool, list[dict]]], took: float, load: float) -> str:
    peers = list(results)
    expected_b = args.records / args.b_rate
    expected_a = args.records / args.a_rate_limit

    def seconds(value, yardstick=None):
        if value is None:
            return "not drained"
        return f"{value:,.1f} s" + (f" ({value / yardstick:.2f}x)" if yardstick else "")

    rows = []

    def row(label, cell):
        rows.append(f"| {label} | " + " | ".join(cell(p) for p in peers) + " |")

    full = {p: results[p][True] for p in peers}
    alone = {p: results[p][False] for p in peers}
    row(
        "healthy channels drained, with A and B",
        lambda p: seconds(median_of(full[p], "healthy_drained")),
    )
    row(
        "healthy channels drained, alone",
        lambda p: seconds(median_of(alone[p], "healthy_drained")),
    )
    row(
        "isolation: with A and B / alone (target ≤ 1.10x)",
        lambda p: (
            f"{median_of(full[p], 'healthy_drained') / median_of(alone[p], 'healthy_drained'):.2f}x"
        ),
    )
    row(
        f"A: attempts refused during its {args.down:g} s outage (retries burned)",
        lambda p: f"{median_of(full[p], 'a_refused'):,.0f}",
    )
    for name in ("A", "B"):
        row(
            f"{name}: records exhausted (of {args.records:,})",
            lambda p, name=name: f"{median_of(full[p], 'exhausted', name):,.0f}",
        )
    row(
        "healthy: records exhausted",
        lambda p: (
            f"{statistics.median(sum(r['exhausted'][n] for n in HEALTHY) for r in full[p]):,.0f}"
        ),
    )
    row(
        "B: 429s after the first", lambda p: f"{median_of(full[p], 'b_throttled_after_first'):,.0f}"
    )
    row(
        f"B: drained (vs {args.records:,} / {args.b_rate}/s = {expected_b:,.0f} s)",
        lambda p: seconds(median_of(full[p], "b_drained"), expected_b),
    )
    row(
        f"A: drained after its recovery (vs {args.records:,} at its rate limit, "
        f"{args.a_rate_limit}/s = {expected_a:,.0f} s)",
        lambda p: seconds(median_of(full[p], "a_drained_after_recovery"), expected_a),
    )
    row(
        "records delivered twice / acknowledged but not delivered",
        lambda p: (
            f"{max(r['succeeded_twice'] for r in full[p] + alone[p])} / "
            f"{max(r['not_delivered'] for r in full[p] + alone[p])}"
        ),
    )
    return "\n".join(
        [
            f"{len(HEALTHY) + 2} channels of {args.records:,} due records; A refuses connections "
            f"for {args.down:g} s; B answers in {args.b_latency * 1000:.0f} ms and 429 above "
            f"{args.b_rate}/s; {args.workers} worker processes of {args.concurrency} threads per "
            f"peer; median of {args.repeat} round(s) alternating the peers.",
            "",
            f"Machine: {machine()}; Redis {redis_version()}; the rounds took {took:.0f} s, the "
            f"1-minute load average was {load:.1f} before them and {os.getloadavg()[0]:.1f} "
            f"after; {date()}.",
            "",
            "| | " + " | ".join(peers) + " |",
            "|---|" + "---:|" * len(peers),
            *rows,
        ]
    )


def redis_version() -> str:
    return redis.Redis.from_url(CELERY_REDIS).info("server")["redis_version"]


def write(command: str, text: str) -> None:
    path = ROOT / "bench" / "OUTAGE.md"
    existing = path.read_text() if path.exists() else ""
    intro = existing.split("\n## Results", 1)[0].rstrip() if existing else "# Outage benchmark"
    path.write_text(f"{intro}\n\n## Results\n\n```sh\n{command}\n```\n\n{text}\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=10_000, help="due records per channel")
    parser.add_argument("--down", type=float, default=60.0, help="seconds A refuses connections")
    parser.add_argument("--b-rate", type=int, default=50, help="B's limit, requests/s")
    parser.add_argument("--b-latency", type=float, default=0.2, help="B's answer time, s")
    parser.add_argument("--a-rate-limit", type=int, default=100, help="A's rate limit (ours)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1, help="rounds")
    parser.add_argument("--peers", default="ours,celery")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds a run may take")
    parser.add_argument("--database", default="fi_outage")
    parser.add_argument("--no-write", action="store_true", help="print, do not write OUTAGE.md")
    args = parser.parse_args()
    peers = args.peers.split(",")
    if set(peers) - {"ours", "celery"} or args.repeat < 1:
        parser.error("--peers: ours and/or celery; --repeat >= 1")

    template = f"{args.database}_template"
    fresh_database(template)
    url = database_url(args.database)
    env = {
        **os.environ,
        "DJANGO_ENV": "embedded",
        "DATABASE_URL": url,
        "DATA_DIR": tempfile.mkdtemp(prefix="fi-outage-"),
        "LOG_LEVEL": "ERROR",
    }
    receiver = Receiver({n: free_port() for n in ["A", "B", *HEALTHY]})
    try:
        manage({**env, "DATABASE_URL": database_url(template)}, "migrate", "-v0")
        runners = {
            "ours": lambda: Ours(args, receiver, env, template),
            "celery": lambda: CeleryPeer(args, receiver),
        }
        made = {p: runners[p]() for p in peers}
        results = {p: {True: [], False: []} for p in peers}
        started, load = time.monotonic(), os.getloadavg()[0]
        for number in range(args.repeat):
            order = peers if number % 2 == 0 else peers[::-1]
            for peer in order:
                for with_a_and_b in (True, False):
                    scenario = Scenario(args, with_a_and_b=with_a_and_b)
                    result = made[peer].run(scenario)
                    results[peer][with_a_and_b].append(result)
                    which = "with" if with_a_and_b else "without"
                    print(f"round {number + 1} {peer} {which} A and B: {json.dumps(result)}")
        text = report(args, results, time.monotonic() - started, load)
    finally:
        receiver.stop()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            for name in (args.database, template):
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(text)
    if not args.no_write:
        write(" ".join(["bench/outage", *sys.argv[1:]]), text)


if __name__ == "__main__":
    main()
