from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from integrations.channels import services
from integrations.choices import ChannelType
from integrations.dispatch.signing import rotate, secret_status
from integrations.models import AuditEntry, Channel


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
        parser.add_argument(
            "--max-concurrency",
            help="the most attempts in flight to the channel app ('' removes the cap)",
        )
        parser.add_argument(
            "--rate-limit", help="attempts per second to the channel app ('' removes the limit)"
        )
        hold = parser.add_mutually_exclusive_group()
        hold.add_argument(
            "--pause", action="store_true", help="hold its dispatch (retry counts untouched)"
        )
        hold.add_argument("--resume", action="store_true", help="lift a pause (or a disabling)")

    def handle(
        self,
        *args,
        id,
        name,
        channel_type,
        retry_endpoint,
        signing_secret,
        inactive,
        max_concurrency,
        rate_limit,
        pause,
        resume,
        **options,
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
        for field, value, cast in (
            ("max_concurrency", max_concurrency, int),
            ("rate_limit", rate_limit, float),
        ):
            if value is not None:
                try:
                    setattr(channel, field, cast(value) if value.strip() else None)
                except ValueError:
                    option = field.replace("_", "-")
                    raise CommandError(f"--{option}: not a number: {value!r}") from None
        try:
            channel.full_clean()
        except ValidationError as error:
            raise CommandError(
                "; ".join(f"{k}: {' '.join(v)}" for k, v in error.message_dict.items())
            ) from None
        channel.save()
        if pause or resume:
            services.channel_hold(
                channel=channel,
                action=services.PAUSE if pause else services.RESUME,
                user=None,
                source=AuditEntry.Source.COMMAND,
            )
            channel.refresh_from_db()
        dispatch = services.dispatch_health(channel)
        self.stdout.write(
            f"channel {channel.pk}: {channel.name} ({channel.channel_type}), "
            f"retry endpoint {channel.retry_endpoint or '(none)'}, "
            f"signing secret {secret_status(channel)}, "
            f"at most {channel.max_concurrency or 'any number of'} in flight, "
            f"{channel.rate_limit or 'no limit of'} attempts/s; dispatch {dispatch['state']}"
        )
