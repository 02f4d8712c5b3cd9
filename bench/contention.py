"""The soak's contention (bench/soak): what its per-client traffic cannot break.

* Shared objects: `SharedClient` threads report failures of the same few objects on a channel
  of their own (each create with an `Idempotency-Key`, sent again with it after a 503), with
  random versions, so that supersedes race each other, while they also park records by object
  filters that others are creating into. Afterwards (`verify_shared`): every acknowledged
  create is stored, once, as answered; each object has at most one active failure, the newest
  stored (latest version, the latest report among equal ones), every other one superseded by
  a newer one; a park never reached beyond the objects it named.
* A retry worker: `RetryRun` gives a third channel due records and a channel app that flaps
  (up, then down answering 500, `bench/receiver.py`), and runs `manage.py run_worker` beside
  the load until the end. Afterwards (`RetryRun.verify`): every attempt finished; what the app
  received matches the attempts one to one by idempotency key (no request twice or
  unrecorded, no answered attempt missing); each record's retry count is its first plus its
  counted failures; a resolved record has exactly one success, its last attempt; an active one
  none.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
SHARED_OBJECTS = 12  # few, so that reports of the same object meet


def _version(rng: random.Random) -> str:
    second = rng.randrange(0, 40)  # equal versions happen too
    return f"2025-06-27T08:00:{second:02d}Z"


@dataclass
class Created:
    pk: int
    object_id: int
    version_date: str


@dataclass
class SharedStats:
    creates: list[Created] = field(default_factory=list)
    repeats: int = 0  # creates sent again with their key after a 503
    parks: int = 0
    parked_objects: set[int] = field(default_factory=set)  # every object a park named
    problems: list[str] = field(default_factory=list)


class LoadClient(threading.Thread):
    """A client thread of the soak: one keep-alive connection with the token, `step` after
    `step` until `deadline`; an exception (a bug of the script) is kept in `crash`, which fails
    the run."""

    base_url: str
    key: str
    deadline: float
    crash: str | None = None

    def step(self, http: httpx.Client) -> None:
        raise NotImplementedError

    def run(self) -> None:
        try:
            with httpx.Client(
                base_url=self.base_url,
                headers={"Authorization": f"Token {self.key}"},
                timeout=httpx.Timeout(30.0),
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            ) as http:
                while time.monotonic() < self.deadline:
                    self.step(http)
        except Exception as error:
            import traceback

            self.crash = f"{error!r}\n{traceback.format_exc()}"


class SharedClient(LoadClient):
    """Reports of a few shared objects, and parks by object filters, as fast as it can."""

    def __init__(
        self,
        number: int,
        *,
        base_url: str,
        key: str,
        channel_id: int,
        content_type: int,
        deadline: float,
        stats: SharedStats,
        lock: threading.Lock,
    ):
        super().__init__(name=f"shared-{number}", daemon=True)
        self.rng = random.Random(1000 + number)
        self.base_url, self.key, self.deadline = base_url, key, deadline
        self.path = f"/api/v1/channel/{channel_id}/failed_integrations/"
        self.content_type = content_type
        self.stats, self.lock = stats, lock

    def create(self, http: httpx.Client) -> None:
        body = {
            "version_date": _version(self.rng),
            "reason_type": "remote",
            "content_type": self.content_type,
            "object_id": self.rng.randrange(SHARED_OBJECTS),
            "max_retry_count": 3,
        }
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        for tries in range(20):
            answer = http.post(self.path, json=body, headers=headers)
            if answer.status_code == 503:
                with self.lock:
                    self.stats.repeats += 1
                time.sleep(0.05 * (tries + 1))
                continue
            break
        if answer.status_code != 201:
            self.problem(f"create {body}: {answer.status_code} {answer.text[:200]}")
            return
        data = answer.json()
        if (data["object_id"], data["version_date"][:19]) != (
            body["object_id"],
            body["version_date"][:19],
        ):
            self.problem(f"create {body}: answered {data}")
        with self.lock:
            self.stats.creates.append(Created(data["pk"], body["object_id"], body["version_date"]))

    def park(self, http: httpx.Client) -> None:
        objects = self.rng.sample(range(SHARED_OBJECTS), self.rng.randint(1, 3))
        with self.lock:  # named before it is sent: it may act before its answer arrives
            self.stats.parked_objects.update(objects)
        answer = http.post(
            f"{self.path}park/", params={"object_id__in": ",".join(map(str, objects))}
        )
        if answer.status_code != 200:
            self.problem(f"park {objects}: {answer.status_code} {answer.text[:200]}")
            return
        data = answer.json()
        if not 0 <= data.get("affected", -1) <= data.get("matched", -1):
            self.problem(f"park {objects}: answered {data}")
        with self.lock:
            self.stats.parks += 1

    def problem(self, text: str) -> None:
        with self.lock:
            self.stats.problems.append(text)

    def step(self, http: httpx.Client) -> None:
        (self.park if self.rng.random() < 0.1 else self.create)(http)


def verify_shared(db_url: str, channel_id: int, stats: SharedStats) -> int:
    """Checks the shared channel against what its clients were answered; answers how many
    records it checked (problems go to `stats.problems`)."""
    with psycopg.connect(db_url, connect_timeout=10) as connection:
        rows = connection.execute(
            "SELECT id, object_id, version_date, is_active, resolution, parked "
            "FROM integrations_failedintegration WHERE channel_id = %s",
            [channel_id],
        ).fetchall()
    stored = {row[0]: row for row in rows}
    problems = stats.problems
    answered = [c.pk for c in stats.creates]
    if len(answered) != len(set(answered)):
        problems.append("a pk was answered to two creates")
    for created in stats.creates:
        row = stored.get(created.pk)
        if row is None or row[1] != created.object_id:
            problems.append(f"create {created} acknowledged, stored as {row}")
    unanswered = set(stored) - set(answered)
    if unanswered:
        problems.append(f"{len(unanswered)} stored records no 201 acknowledged")
    by_object: dict[int, list[tuple]] = {}
    for row in rows:
        by_object.setdefault(row[1], []).append(row)
    for object_id, group in by_object.items():
        newest = max(group, key=lambda row: (row[2], row[0]))
        active = [row for row in group if row[3]]
        if active != [newest]:  # nothing but a supersede deactivates a record here
            problems.append(
                f"object {object_id}: active {[r[0] for r in active]}, newest {newest[0]}"
            )
        for row in group:
            if not row[3] and row[4] != "superseded":
                problems.append(f"record {row[0]} inactive as {row[4]!r}, not superseded")
            if row[4] == "superseded" and row is newest:
                problems.append(f"record {row[0]} superseded, yet the newest of its object")
            if row[5] and object_id not in stats.parked_objects:
                problems.append(f"record {row[0]} parked, its object named by no park")
    return len(rows)


class RetryRun:
    """A retry worker against a flapping channel app, beside the load."""

    def __init__(self, env: dict[str, str], manage, *, port: int, records: int, flap: float):
        self.env = {
            **env,
            # Quick to open and to probe again: a flap of a few seconds is an outage here.
            "BREAKER_COOL_DOWN_MIN": "1",
            "BREAKER_COOL_DOWN_MAX": "2",
            "DRAIN_START_RATE": "1000",
            "ALLOWED_ENDPOINT_NETWORKS": "127.0.0.0/8",  # the app is on this machine
        }
        self.manage, self.records, self.flap = manage, records, flap
        self.port = port  # the channel app's
        self.receiver: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.channel_id = 0

    def start(self, base_url: str, key: str, content_type: int) -> None:
        self.receiver = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "receiver.py"),
                str(self.port),
                "0",
                str(self.flap),
            ]
        )
        output = self.manage(
            [
                "channel",
                "--name",
                "soak-retry",
                "--retry-endpoint",
                f"http://127.0.0.1:{self.port}/",
            ],
            self.env,
        ).strip()
        self.channel_id = int(output.split(":", 1)[0].split()[1])
        body = [
            {
                "version_date": "2025-06-27T08:00:00Z",
                "reason_type": "remote",
                "content_type": content_type,
                "object_id": i,
                "retry_count": 1,
                "max_retry_count": 4,
                # Due one after another over 20 s, and again as long after each failure: the
                # attempts span several of the app's ups and downs.
                "retry_interval": i % 20,
            }
            for i in range(self.records)
        ]
        answer = httpx.post(
            f"{base_url}/api/v1/channel/{self.channel_id}/failed_integrations/bulk/",
            json=body,
            headers={"Authorization": f"Token {key}"},
            timeout=60,
        )
        if answer.status_code != 201:
            raise RuntimeError(f"bulk of the retry channel: {answer.status_code} {answer.text}")
        self.worker = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "run_worker",
                "--concurrency",
                "8",
                "--batch",
                "40",
                "--poll",
                "0.1",
                "--timeout",
                "3",
                "--lease",
                "10",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stop(self) -> str | None:
        """Stops the worker (SIGTERM: it finishes what is in flight); answers its error, if it
        failed."""
        failure = None
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGTERM)
            try:
                _, errors = self.worker.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                return "the retry worker did not stop within 60 s of SIGTERM"
            if self.worker.returncode:
                failure = f"the retry worker ended with {self.worker.returncode}: {errors[-2000:]}"
        elif self.worker is not None:
            failure = f"the retry worker stopped during the load: {self.worker.stderr.read()}"
        return failure

    def close(self) -> None:
        for process in (self.worker, self.receiver):
            if process is not None and process.poll() is None:
                process.kill()

    def received(self) -> list[str]:
        url = f"http://127.0.0.1:{self.port}/keys"
        with urllib.request.urlopen(url, timeout=30) as response:
            text = response.read().decode()
        return text.split("\n") if text else []

    def verify(self, db_url: str) -> tuple[dict[str, int], list[str]]:
        problems: list[str] = []
        received = self.received()
        with psycopg.connect(db_url, connect_timeout=10) as connection:
            attempts = connection.execute(
                "SELECT a.idempotency_key, a.outcome, a.failed_integration_id, a.finished_at "
                "FROM integrations_retryattempt AS a JOIN integrations_failedintegration AS f "
                "ON f.id = a.failed_integration_id WHERE f.channel_id = %s ORDER BY a.id",
                [self.channel_id],
            ).fetchall()
            records = connection.execute(
                "SELECT id, retry_count, is_active FROM integrations_failedintegration "
                "WHERE channel_id = %s",
                [self.channel_id],
            ).fetchall()
        outcomes: dict[str, int] = {}
        for _, outcome, _, _ in attempts:
            outcomes[outcome or "unfinished"] = outcomes.get(outcome or "unfinished", 0) + 1
        if any(finished is None for *_, finished in attempts):
            problems.append("attempts left unfinished after the worker stopped")
        recorded = {key: outcome for key, outcome, _, _ in attempts}
        if len(received) != len(set(received)):
            problems.append(f"{len(received) - len(set(received))} requests received twice")
        if set(received) - set(recorded):
            problems.append(f"{len(set(received) - set(recorded))} requests never recorded")
        answered = {k for k, o in recorded.items() if o in ("success", "http_error", "throttled")}
        if answered - set(received):
            problems.append(f"{len(answered - set(received))} answered attempts never arrived")
        by_record: dict[int, list[str]] = {}
        for _, outcome, record, _ in attempts:
            by_record.setdefault(record, []).append(outcome)
        counted = ("http_error", "timeout", "refused", "error")
        for pk, retry_count, is_active in records:
            made = by_record.get(pk, [])
            if retry_count != 1 + sum(1 for o in made if o in counted):
                problems.append(f"record {pk}: retry_count {retry_count}, attempts {made}")
            successes = made.count("success")
            if is_active and successes:
                problems.append(f"record {pk} active after a success: {made}")
            if not is_active and (successes != 1 or made[-1] != "success"):
                problems.append(f"record {pk} resolved, attempts {made}")
        resolved = sum(1 for _, _, is_active in records if not is_active)
        if not resolved:
            problems.append(f"no record resolved (attempts by outcome {outcomes})")
        return {
            "records": len(records),
            "resolved": resolved,
            "attempts": len(attempts),
            "received": len(received),
            **outcomes,
        }, problems
