from __future__ import annotations

from django.contrib.contenttypes.models import ContentType
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import F, Q

from common.fields import INT32_MAX

from .choices import ChannelType, ReasonType


class Channel(models.Model):
    """A sales channel (marketplace, web shop, ...) that objects are pushed to."""

    name = models.CharField(max_length=255)
    channel_type = models.CharField(
        max_length=32, choices=ChannelType.choices, default=ChannelType.MARKETPLACE
    )
    is_active = models.BooleanField(default=True)
    # Where the retry engine posts a failed integration to have it retried (optional).
    retry_endpoint = models.URLField(max_length=1024, blank=True, default="")
    # Secret for the HMAC-SHA256 signature of retry requests (optional).
    signing_secret = models.CharField(max_length=255, blank=True, default="")
    created_date = models.DateTimeField(auto_now_add=True)
    modified_date = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"


class IntegrationAction(models.Model):
    """The link between a local object and its twin on a channel."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="+")
    content_type = models.ForeignKey(ContentType, on_delete=models.PROTECT, related_name="+")
    object_id = models.PositiveBigIntegerField()
    remote_id = models.CharField(max_length=256, null=True, blank=True)
    version_date = models.DateTimeField(null=True, blank=True)
    state = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=64, blank=True, default="")
    created_date = models.DateTimeField(auto_now_add=True)
    modified_date = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "content_type", "object_id"],
                name="integration_action_unique_object_per_channel",
            )
        ]

    def __str__(self) -> str:
        return f"{self.content_type_id}:{self.object_id} on channel {self.channel_id}"


class FailedIntegration(models.Model):
    """An object that did not reach a channel, and how it may be retried.

    Every list query is scoped to one channel, so the indexes lead with the channel and end
    with the pk (the tie-breaker of every sort): one index per sortable field serves its sort and
    its range filters, and one per filterable field lets PostgreSQL find rare values without
    walking the channel.
    """

    # The channel-leading indexes below serve lookups by channel.
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="+", db_index=False)
    version_date = models.DateTimeField(db_index=True)
    reason_type = models.CharField(max_length=15, choices=ReasonType.choices)
    is_active = models.BooleanField(default=True)
    content_type = models.ForeignKey(
        ContentType, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    object_id = models.PositiveBigIntegerField()
    expiration_date = models.DateTimeField(null=True, blank=True)
    retry_count = models.PositiveIntegerField(default=1, validators=[MaxValueValidator(INT32_MAX)])
    max_retry_count = models.PositiveIntegerField(
        default=1, validators=[MaxValueValidator(INT32_MAX)]
    )
    retry_interval = models.PositiveIntegerField(
        default=0, validators=[MaxValueValidator(INT32_MAX)]
    )
    integration_action = models.ForeignKey(
        IntegrationAction, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    log_id = models.PositiveBigIntegerField(null=True, blank=True)
    created_date = models.DateTimeField(auto_now_add=True)
    modified_date = models.DateTimeField(auto_now=True)
    # Retries have run out: kept by the database, so that it can be indexed and counted.
    exhausted = models.GeneratedField(
        expression=Q(retry_count__gte=F("max_retry_count")),
        output_field=models.BooleanField(),
        db_persist=True,
    )

    class Meta:
        ordering = ["pk"]
        indexes = [
            models.Index(fields=["channel", "content_type", "object_id"], name="fi_channel_object"),
            models.Index(fields=["channel", "id"], name="fi_channel_pk"),
            *(
                models.Index(fields=["channel", name, "id"], name=f"fi_channel_{short}")
                for name, short in (
                    ("version_date", "version"),
                    ("expiration_date", "expiration"),
                    ("retry_count", "retries"),
                    ("max_retry_count", "max_retries"),
                    ("retry_interval", "interval"),
                    ("created_date", "created"),
                    ("modified_date", "modified"),
                    ("reason_type", "reason"),
                    ("is_active", "active"),
                    ("exhausted", "exhausted"),
                )
            ),
            models.Index(fields=["channel", "object_id"], name="fi_channel_object_id"),
            models.Index(fields=["channel", "log_id"], name="fi_channel_log"),
        ]

    def __str__(self) -> str:
        return f"{self.reason_type} failure of {self.content_type_id}:{self.object_id}"
