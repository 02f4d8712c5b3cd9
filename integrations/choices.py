from __future__ import annotations

from django.db import models


class ReasonType(models.TextChoices):
    MAPPING = "mapping", "Mapping"
    REMOTE = "remote", "Remote"
    CHANNEL_APP = "channel_app", "Channel app"


class Resolution(models.TextChoices):
    """Why an inactive record is no longer retried."""

    RESOLVED = "resolved", "Resolved"  # the channel app took it, or a person closed it
    SUPERSEDED = "superseded", "Superseded"  # a failure of a newer version came in
    EXPIRED = "expired", "Expired"  # its expiration date passed


class State(models.TextChoices):
    """Where a record is in its retry life cycle (derived, read-only)."""

    PENDING = "pending", "Pending"
    DUE = "due", "Due"
    # Due, but nothing is sent to its channel app now (paused, circuit open, asked to wait).
    HELD = "held", "Held"
    IN_PROGRESS = "in_progress", "In progress"
    RESOLVED = "resolved", "Resolved"
    EXHAUSTED = "exhausted", "Exhausted"
    PARKED = "parked", "Parked"
    EXPIRED = "expired", "Expired"
    SUPERSEDED = "superseded", "Superseded"


class Backoff(models.TextChoices):
    FIXED = "fixed", "Fixed: retry_interval between attempts"
    EXPONENTIAL = "exponential", "Exponential: retry_interval x factor^attempts"


class AttemptOutcome(models.TextChoices):
    SUCCESS = "success", "Success (2xx)"
    HTTP_ERROR = "http_error", "Non-2xx answer"
    TIMEOUT = "timeout", "Timed out"
    REFUSED = "refused", "Connection refused"
    ERROR = "error", "Other transport error"
    LEASE_LOST = "lease_lost", "Answer came after the lease expired (ignored)"
    THROTTLED = "throttled", "Asked to wait (429, or 503 with Retry-After): not counted"


class Role(models.TextChoices):
    """What a grant lets its user do on a channel (or, without a channel, on every channel);
    each role can do what the ones before it can."""

    VIEWER = "viewer", "viewer: reads"
    OPERATOR = "operator", "operator: reads, reports, edits records, runs operator actions"
    ADMIN = "admin", "admin: also the channel's settings and its grants"


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
