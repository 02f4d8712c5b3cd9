from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from common.server import default_bind, default_workers
from integrations.demo import demo_setup

BASE_DIR = Path(__file__).resolve().parents[3]


def is_loopback(bind: str) -> bool:
    """Whether a gunicorn bind (host:port, [v6]:port, unix:path) is reachable only from this
    machine."""
    if bind.startswith(("unix:", "fd://")):
        return True
    host = bind.rsplit(":", 1)[0] if bind.count(":") == 1 or bind.startswith("[") else bind
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


class Command(BaseCommand):
    help = "Applies migrations, then serves the API with gunicorn (the production server)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--bind",
            default=default_bind(),
            help="host:port to listen on (default 127.0.0.1:8000, or $BIND)",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=default_workers(),
            help="worker processes (default 2, or $WEB_CONCURRENCY)",
        )
        parser.add_argument("--no-migrate", action="store_true", help="skip `migrate`")
        parser.add_argument(
            "--with-worker",
            action="store_true",
            help="also run a retry worker (one process), so that failures are retried",
        )
        parser.add_argument(
            "--demo",
            action="store_true",
            help="embedded mode: make sure a demo channel and user exist and print a token",
        )

    def handle(
        self,
        *args,
        bind: str,
        workers: int,
        no_migrate: bool,
        demo: bool,
        with_worker: bool,
        **options,
    ):
        if workers < 1:
            raise CommandError("--workers must be at least 1.")
        if demo and not is_loopback(bind):
            raise CommandError(
                f"--demo serves only a loopback address (127.0.0.1, [::1], localhost), not "
                f"{bind!r}: its user 'demo' (password 'demo') may read and change every "
                "channel. To serve the network, start without --demo, with users of your own."
            )
        if not no_migrate:
            call_command("migrate", interactive=False, verbosity=0)
        if demo:
            if settings.PRODUCTION:
                raise CommandError("--demo is for the embedded mode, not DJANGO_ENV=production.")
            self._print_demo(bind)
        from common.server import serve

        worker, master = None, os.getpid()
        if with_worker:
            # A process of its own, stopped with the server (SIGTERM: it finishes its batch).
            worker = subprocess.Popen([sys.executable, "manage.py", "run_worker"], cwd=BASE_DIR)
        try:
            serve(bind=bind, workers=workers)
        finally:
            # gunicorn's own workers are forks of this process: only the master stops it.
            if worker is not None and os.getpid() == master:
                worker.terminate()
                worker.wait(timeout=60)

    def _print_demo(self, bind: str) -> None:
        demo = demo_setup()
        base = f"http://{bind}"
        self.stdout.write(
            f"\nDemo channel {demo.channel.pk} ({demo.channel.name}); user {demo.username!r}, "
            f"password {demo.password!r}.\n"
            f"Console: {base}/console/ (and the admin at {base}/admin/)\n"
            f"API docs: {base}/api/v1/docs/ (authorize with: Token {demo.key})\n"
            f"Token: {demo.key}\n"
            f"Try:   curl -H 'Authorization: Token {demo.key}' "
            f"{base}/api/v1/channel/{demo.channel.pk}/failed_integrations/\n"
        )
        self.stdout.flush()
