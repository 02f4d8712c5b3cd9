"""The demo set-up of the embedded mode: a channel, a user and a token to try the API with."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction

from accounts.services import token_create
from integrations.choices import ChannelType, Role
from integrations.models import Channel, ChannelGrant

DEMO_CHANNEL_NAME = "Demo marketplace"
DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo"  # noqa: S105 - embedded mode only; refused in production


@dataclass(frozen=True)
class Demo:
    channel: Channel
    username: str
    password: str
    key: str


@transaction.atomic
def demo_setup() -> Demo:
    channel = Channel.objects.filter(name=DEMO_CHANNEL_NAME).order_by("pk").first()
    if channel is None:
        channel = Channel.objects.create(
            name=DEMO_CHANNEL_NAME, channel_type=ChannelType.MARKETPLACE
        )
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(
        username=DEMO_USERNAME, defaults={"is_staff": True}
    )
    if created:
        user.set_password(DEMO_PASSWORD)
        user.save(update_fields=["password"])
    # The demo shows everything: an admin of every channel.
    ChannelGrant.objects.update_or_create(user=user, channel=None, defaults={"role": Role.ADMIN})
    _, key = token_create(user=user, name="demo")
    return Demo(channel=channel, username=DEMO_USERNAME, password=DEMO_PASSWORD, key=key)
