"""The demo set-up of the embedded mode: a channel with a few hundred varied failures, a user
and a token to try the API and the console with."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.utils import timezone

from accounts.services import token_create
from integrations.choices import AttemptOutcome, ChannelType, ReasonType, Resolution, Role
from integrations.models import Channel, ChannelGrant, FailedIntegration, RetryAttempt

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
    user, created = user_model.objects.get_or_create(username=DEMO_USERNAME)
    if created:
        user.set_password(DEMO_PASSWORD)
    # The embedded mode's demo reaches everything, the admin site included (loopback only).
    user.is_staff = user.is_superuser = True
    user.save()
    # The demo shows everything: an admin of every channel.
    ChannelGrant.objects.update_or_create(user=user, channel=None, defaults={"role": Role.ADMIN})
    _, key = token_create(user=user, name="demo")
    if not FailedIntegration.objects.filter(channel=channel).exists():
        demo_seed(channel)
    return Demo(channel=channel, username=DEMO_USERNAME, password=DEMO_PASSWORD, key=key)


DEMO_TYPES = (
    ("products", "product"),
    ("prices", "productprice"),
    ("stocks", "productstock"),
    ("orders", "order"),
)
ERRORS = (
    "HTTP 503: marketplace maintenance window",
    "HTTP 422: category mapping missing for node 4411",
    "timed out: read timeout after 10 s",
    "HTTP 400: price below the marketplace minimum",
)


def demo_seed(channel: Channel, *, count: int = 360, seed: int = 7) -> int:
    """A few hundred failures of the last 7 days in every state, reason and several content
    types, some with attempts; answers how many were made."""
    rng = random.Random(seed)
    now = timezone.now()
    types = [ContentType.objects.get_or_create(app_label=a, model=m)[0] for a, m in DEMO_TYPES]
    records = []
    for n in range(count):
        created = now - dt.timedelta(hours=rng.uniform(0, 7 * 24))
        reason = rng.choice([ReasonType.REMOTE] * 3 + [ReasonType.MAPPING, ReasonType.CHANNEL_APP])
        kind = rng.choice(
            ["pending"] * 4
            + ["due", "exhausted", "exhausted", "parked", "resolved", "resolved"]
            + ["superseded", "expired"]
        )
        maximum = rng.choice([3, 5, 8])
        record = FailedIntegration(
            channel=channel,
            content_type=rng.choice(types),
            object_id=50_000 + n,  # apart from the README walk-through's objects
            reason_type=reason,
            version_date=created - dt.timedelta(minutes=5),
            created_date=created,
            retry_count=rng.randint(1, maximum - 1),
            max_retry_count=maximum,
            retry_interval=rng.choice([60, 300, 900]),
            last_attempt_at=created + dt.timedelta(minutes=10),
            last_error=rng.choice(ERRORS),
        )
        # As the default policies schedule them: a mapping failure waits for a person.
        scheduled = reason != ReasonType.MAPPING
        if kind == "pending" and scheduled:
            record.next_retry_at = now + dt.timedelta(minutes=rng.randint(5, 600))
        elif kind == "due" and scheduled:
            record.next_retry_at = now - dt.timedelta(minutes=rng.randint(1, 120))
        elif kind == "exhausted":
            record.retry_count = maximum
        elif kind == "parked":
            record.parked = True
        elif kind in ("resolved", "superseded"):
            record.is_active = False
            record.resolution = Resolution.RESOLVED if kind == "resolved" else Resolution.SUPERSEDED
            record.resolved_at = min(now, created + dt.timedelta(hours=rng.uniform(0.2, 30)))
            record.last_error = ""
        elif kind == "expired":
            record.expiration_date = created + dt.timedelta(hours=1)
        records.append(record)
    made = FailedIntegration.objects.bulk_create(records)
    attempts = []
    for record in made:
        for number in range(1, record.retry_count):
            started = record.created_date + dt.timedelta(minutes=2 * number)
            failed = not (not record.is_active and number == record.retry_count - 1)
            attempts.append(
                RetryAttempt(
                    failed_integration=record,
                    number=number,
                    idempotency_key=uuid.uuid4().hex,
                    worker="demo",
                    started_at=started,
                    finished_at=started + dt.timedelta(milliseconds=rng.randint(40, 900)),
                    outcome=AttemptOutcome.HTTP_ERROR if failed else AttemptOutcome.SUCCESS,
                    http_status=503 if failed else 200,
                    error="HTTP 503: marketplace maintenance window" if failed else "",
                )
            )
    # In the order they would have been made, as a worker records them.
    RetryAttempt.objects.bulk_create(sorted(attempts, key=lambda attempt: attempt.started_at))
    return len(made)
