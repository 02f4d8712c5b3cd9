from __future__ import annotations

import re
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from integrations.dispatch.worker import Worker, WorkerConfig, release_leases


class Command(BaseCommand):
    help = (
        "Runs a retry worker: dispatches due failed integrations to their channel apps. Run as "
        "many as needed on PostgreSQL (one on SQLite). SIGTERM finishes the attempts in flight."
    )

    def add_arguments(self, parser):
        parser.add_argument("--concurrency", type=int, default=settings.WORKER_CONCURRENCY)
        parser.add_argument("--batch", type=int, default=settings.WORKER_BATCH)
        parser.add_argument("--lease", type=float, default=settings.RETRY_LEASE_SECONDS)
        parser.add_argument("--timeout", type=float, default=settings.RETRY_TIMEOUT_SECONDS)
        parser.add_argument("--poll", type=float, default=1.0, help="seconds between polls")
        parser.add_argument(
            "--housekeeping",
            type=float,
            default=30.0,
            help="seconds between expiry, retention, event delivery and count compaction",
        )
        parser.add_argument("--once", action="store_true", help="stop when nothing is due")
        parser.add_argument("--name", default=None, help="worker name (default host:pid:random)")
        parser.add_argument(
            "--metrics-bind",
            default="",
            help="host:port where this worker serves its own Prometheus metrics (attempts, "
            "exhaustions, leases lost), for a worker whose process is not one of `serve`'s",
        )

    def handle(
        self,
        *args,
        concurrency,
        batch,
        lease,
        timeout,
        poll,
        housekeeping,
        once,
        name,
        metrics_bind,
        **options,
    ):
        if min(concurrency, batch) < 1 or min(lease, timeout, poll) <= 0:
            raise CommandError("--concurrency and --batch must be >= 1; times must be > 0.")
        if timeout >= lease:
            raise CommandError("--timeout must be shorter than --lease.")
        config = WorkerConfig(
            concurrency=concurrency,
            batch=batch,
            lease=lease,
            timeout=timeout,
            poll=poll,
            housekeeping_every=housekeeping,
        )
        if name:
            config.name = name
        if metrics_bind:
            from prometheus_client import start_http_server

            host, _, port = metrics_bind.rpartition(":")
            if not re.fullmatch(r"[0-9]{1,5}", port) or not host:
                raise CommandError("--metrics-bind takes host:port, e.g. 127.0.0.1:9101.")
            start_http_server(int(port), addr=host.strip("[]"))
        worker = Worker(config)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: worker.stop())
        self.stdout.write(f"worker {config.name} started")
        self.stdout.flush()
        try:
            made = worker.run(once=once)
        finally:
            release_leases(config.name)
        self.stdout.write(f"worker {config.name} stopped after {made} attempts")
