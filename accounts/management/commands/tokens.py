from __future__ import annotations

from django.core.management.base import BaseCommand

from accounts.models import Token


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


class Command(BaseCommand):
    help = "Lists API tokens: prefix, user, name, created, last used, expires, revoked."

    def add_arguments(self, parser):
        parser.add_argument("--user", help="only this user's tokens")
        parser.add_argument("--active", action="store_true", help="only tokens not revoked")

    def handle(self, *args, user: str | None, active: bool, **options):
        tokens = Token.objects.select_related("user").order_by("user__username", "pk")
        if user:
            tokens = tokens.filter(user__username=user)
        if active:
            tokens = tokens.filter(revoked_at__isnull=True)
        header = ("prefix", "user", "name", "created", "last used", "expires", "revoked")
        rows = [
            (
                token.prefix,
                token.user.get_username(),
                token.name or "-",
                _when(token.created_date),
                _when(token.last_used_at),
                _when(token.expires_at),
                _when(token.revoked_at),
            )
            for token in tokens
        ]
        widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            self.stdout.write(
                "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
            )
