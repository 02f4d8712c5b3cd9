from __future__ import annotations

import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from integrations.dispatch.worker import Worker, WorkerConfig, release_leases


class Command(BaseCommand):
    help = (
        "Runs a retry worker: dispatches due failed integrations to their channel apps. Run as "
        "many as needed on PostgreSQL (one on SQLite). SIGTERM finishes the batch in flight."
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

    def handle(
        self, *args, concurrency, batch, lease, timeout, poll, housekeeping, once, name, **options
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
