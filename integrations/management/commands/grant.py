from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from integrations.choices import Role
from integrations.models import Channel, ChannelGrant


class Command(BaseCommand):
    help = (
        "Gives a user a role on a channel, or on every channel (--all-channels): viewer, "
        "operator (the default) or admin; or takes it back (--revoke)."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("channel", type=int, nargs="?", help="the channel (or --all-channels)")
        parser.add_argument("--all-channels", action="store_true", help="a role on every channel")
        parser.add_argument("--role", choices=Role.values, default=None)
        parser.add_argument("--read-only", action="store_true", help="the same as --role viewer")
        parser.add_argument("--revoke", action="store_true")

    def handle(
        self,
        *args,
        username: str,
        channel: int | None,
        all_channels: bool,
        role: str | None,
        read_only: bool,
        revoke: bool,
        **options,
    ):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        if (channel is None) == (not all_channels):
            raise CommandError("Give a channel or --all-channels (not both).")
        if channel is not None and not Channel.objects.filter(pk=channel).exists():
            raise CommandError(f"No channel {channel}.")
        if read_only and role not in (None, Role.VIEWER):
            raise CommandError("--read-only is --role viewer.")
        where = f"channel {channel}" if channel is not None else "every channel"
        if revoke:
            deleted, _ = ChannelGrant.objects.filter(user=user, channel_id=channel).delete()
            self.stdout.write(f"{username}: {where} {'revoked' if deleted else 'was not granted'}")
            return
        role = Role.VIEWER if read_only else (role or Role.OPERATOR)
        ChannelGrant.objects.update_or_create(
            user=user, channel_id=channel, defaults={"role": role}
        )
        self.stdout.write(f"{username}: {role} on {where}")
