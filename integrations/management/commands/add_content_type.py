from __future__ import annotations

import re

from django.core.management.base import BaseCommand, CommandError

from integrations.records.services import content_type_get_or_create

NAME_RE = re.compile(r"^([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)$")


class Command(BaseCommand):
    help = "Makes a kind of back-office object known, as app_label.model (e.g. orders.order)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="app_label.model, lower case")

    def handle(self, *args, name: str, **options):
        match = NAME_RE.match(name)
        if match is None:
            raise CommandError("Give the content type as app_label.model, e.g. orders.order.")
        content_type, created = content_type_get_or_create(
            app_label=match.group(1), model=match.group(2)
        )
        verb = "added" if created else "exists"
        self.stdout.write(
            f"{content_type.app_label}.{content_type.model} {verb}: id {content_type.pk}"
        )
