from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from common.database import is_postgresql
from integrations.counting import counts


class Command(BaseCommand):
    help = (
        "Folds the pending count deltas into the base counts (PostgreSQL). Reads do it by "
        "themselves when many are pending; run it after a large import."
    )

    def add_arguments(self, parser):
        parser.add_argument("--channel", type=int, default=None, help="only this channel")

    def handle(self, *args, channel: int | None, **options):
        if not is_postgresql():
            raise CommandError("Counts are kept on PostgreSQL only; SQLite counts rows.")
        counts.compact(channel)
        counts.vacuum()
        self.stdout.write("Counts compacted.")
