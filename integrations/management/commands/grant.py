from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from integrations.models import Channel, ChannelGrant


class Command(BaseCommand):
    help = "Grants a user a channel (read-write, or --read-only), or takes it back (--revoke)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("channel", type=int)
        parser.add_argument("--read-only", action="store_true")
        parser.add_argument("--revoke", action="store_true")

    def handle(self, *args, username: str, channel: int, read_only: bool, revoke: bool, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        if not Channel.objects.filter(pk=channel).exists():
            raise CommandError(f"No channel {channel}.")
        if revoke:
            deleted, _ = ChannelGrant.objects.filter(user=user, channel_id=channel).delete()
            self.stdout.write(
                f"{username}: channel {channel} {'revoked' if deleted else 'was not granted'}"
            )
            return
        ChannelGrant.objects.update_or_create(
            user=user, channel_id=channel, defaults={"can_write": not read_only}
        )
        mode = "read-only" if read_only else "read-write"
        self.stdout.write(f"{username}: channel {channel} granted ({mode})")
