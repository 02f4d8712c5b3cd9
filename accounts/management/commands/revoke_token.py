from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Token
from accounts.services import token_revoke


class Command(BaseCommand):
    help = "Revokes the token whose key starts with PREFIX (as the admin shows), or a user's."

    def add_arguments(self, parser):
        parser.add_argument("prefix", nargs="?", help="the first 8 characters of the key")
        parser.add_argument("--user", help="revoke every token of this user")

    def handle(self, *args, prefix: str | None, user: str | None, **options):
        if user:
            tokens = Token.objects.filter(user__username=user, revoked_at__isnull=True)
        elif prefix:
            tokens = Token.objects.filter(prefix=prefix[:8], revoked_at__isnull=True)
        else:
            raise CommandError("Give a key prefix or --user.")
        tokens = list(tokens)
        if not tokens:
            raise CommandError("No such active token.")
        if prefix and len(tokens) > 1:
            raise CommandError("Several tokens share this prefix; revoke them in the admin.")
        for token in tokens:
            token_revoke(token=token)
        self.stdout.write(f"{len(tokens)} token(s) revoked")
