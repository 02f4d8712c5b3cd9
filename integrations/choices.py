from __future__ import annotations

from django.db import models


class ReasonType(models.TextChoices):
    MAPPING = "mapping", "Mapping"
    REMOTE = "remote", "Remote"
    CHANNEL_APP = "channel_app", "Channel app"


class ChannelType(models.TextChoices):
    MARKETPLACE = "marketplace", "Marketplace"
    WEB = "web", "Web"
    MOBILE_APP = "mobile_app", "Mobile app"
    POS = "pos", "Point of sale"
    OTHER = "other", "Other"


# The back office's integrable objects, as (app_label, model) of its ContentType framework.
# They are not models of this service, but their content types exist from the first migration
# so that channel apps can report failures for them at once.
INTEGRABLE_CONTENT_TYPES: tuple[tuple[str, str], ...] = (
    ("products", "product"),
    ("prices", "productprice"),
    ("stocks", "productstock"),
    ("products", "productimage"),
    ("orders", "order"),
    ("orders", "orderitem"),
    ("orders", "cancellationrequest"),
    ("categories", "categorynode"),
)
