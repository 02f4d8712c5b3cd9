from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from integrations.choices import ChannelType
from integrations.dispatch.signing import rotate, secret_status
from integrations.models import Channel


class Command(BaseCommand):
    help = (
        "Creates a channel (without ID) or changes one: name, type, retry endpoint and signing "
        "secret. Prints the channel."
    )

    def add_arguments(self, parser):
        parser.add_argument("id", nargs="?", type=int, help="the channel to change")
        parser.add_argument("--name")
        parser.add_argument("--type", dest="channel_type", choices=ChannelType.values)
        parser.add_argument("--retry-endpoint", help="URL the retry engine POSTs to ('' clears)")
        parser.add_argument(
            "--signing-secret",
            help="HMAC-SHA256 key of retry requests ('' stops signing); it replaces the current "
            "one, which goes on signing beside it for SIGNING_SECRET_OVERLAP_HOURS",
        )
        parser.add_argument("--inactive", action="store_true", help="mark it inactive")

    def handle(
        self, *args, id, name, channel_type, retry_endpoint, signing_secret, inactive, **options
    ):
        if id is None:
            if not name:
                raise CommandError("A new channel needs --name.")
            channel = Channel(name=name)
        else:
            channel = Channel.objects.filter(pk=id).first()
            if channel is None:
                raise CommandError(f"No channel {id}.")
        for field, value in (
            ("name", name),
            ("channel_type", channel_type),
            ("retry_endpoint", retry_endpoint),
        ):
            if value is not None:
                setattr(channel, field, value)
        if signing_secret is not None:
            rotate(channel, signing_secret)
        if inactive:
            channel.is_active = False
        try:
            channel.full_clean()
        except ValidationError as error:
            raise CommandError(
                "; ".join(f"{k}: {' '.join(v)}" for k, v in error.message_dict.items())
            ) from None
        channel.save()
        self.stdout.write(
            f"channel {channel.pk}: {channel.name} ({channel.channel_type}), "
            f"retry endpoint {channel.retry_endpoint or '(none)'}, "
            f"signing secret {secret_status(channel)}"
        )
