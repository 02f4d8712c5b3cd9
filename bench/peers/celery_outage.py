"""The obvious retry engine a team would otherwise write, for bench/outage: Celery with Redis,
one task per failed record, which POSTs the record to its channel app with `requests` and lets
Celery retry it (`autoretry_for` with `retry_backoff`, the same attempts as the service's
records: max_retry_count 5 is a first attempt and 4 retries).

    celery -A bench.peers.celery_outage worker --pool threads --concurrency 16

It keeps what the benchmark reads in Redis (the broker's database): per channel, the attempts
the app refused (`refused:<channel>`) and the records whose last retry failed (`exhausted:
<channel>`), and `finished`, the tasks that ended (a success or an exhaustion).
"""

from __future__ import annotations

import os

import redis
import requests
from celery import Celery, Task

BROKER = os.environ.get("CELERY_OUTAGE_BROKER", "redis://127.0.0.1:6379/15")
ATTEMPTS = 5  # the records' max_retry_count

app = Celery("celery_outage", broker=BROKER)
app.conf.update(
    task_ignore_result=True,
    task_acks_late=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    # A task retried with a countdown waits in a worker's memory until its time; Redis gives it
    # back to another worker after the visibility timeout only, longer than any wait here.
    broker_transport_options={"visibility_timeout": 3600},
)
_store = None


def store() -> redis.Redis:
    global _store
    if _store is None:
        _store = redis.Redis.from_url(BROKER)
    return _store


class RecordTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        """Called once the retries are used up: the record is exhausted."""
        store().incr(f"exhausted:{kwargs['channel']}")
        store().incr("finished")

    def on_success(self, retval, task_id, args, kwargs):
        store().incr("finished")


@app.task(
    bind=True,
    base=RecordTask,
    autoretry_for=(requests.RequestException,),
    retry_backoff=True,
    max_retries=ATTEMPTS - 1,
)
def retry_record(self, *, channel: str, url: str, body: str) -> None:
    try:
        response = requests.post(
            url, data=body, headers={"Content-Type": "application/json"}, timeout=10
        )
    except requests.ConnectionError:
        store().incr(f"refused:{channel}")
        raise
    response.raise_for_status()
