from __future__ import annotations

from django.contrib.contenttypes.models import ContentType
from django.db import models


class Channel(models.Model):
    name = models.CharField(max_length=255)
    channel_type = models.CharField(max_length=32, default="marketplace")
    is_active = models.BooleanField(default=True)
    created_date = models.DateTimeField(auto_now_add=True)
    modified_date = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name


class IntegrationAction(models.Model):
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE)
    content_type = models.ForeignKey(ContentType, on_delete=models.PROTECT)
    object_id = models.PositiveBigIntegerField()
    remote_id = models.CharField(max_length=256, null=True, blank=True)
    version_date = models.DateTimeField(null=True, blank=True)
    created_date = models.DateTimeField(auto_now_add=True)
    modified_date = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.content_type_id}:{self.object_id}"


class FailedIntegration(models.Model):
    class ReasonType(models.TextChoices):
        MAPPING = "mapping"
        REMOTE = "remote"
        CHANNEL_APP = "channel_app"

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE)
    version_date = models.DateTimeField(db_index=True)
    reason_type = models.CharField(max_length=15, choices=ReasonType.choices)
    is_active = models.BooleanField(default=True)
    content_type = models.ForeignKey(ContentType, on_delete=models.PROTECT)
    object_id = models.PositiveBigIntegerField()
    expiration_date = models.DateTimeField(null=True, blank=True)
    retry_count = models.PositiveIntegerField(default=1)
    max_retry_count = models.PositiveIntegerField(default=1)
    retry_interval = models.PositiveIntegerField(default=0)
    integration_action = models.ForeignKey(
        IntegrationAction, null=True, blank=True, on_delete=models.SET_NULL
    )
    log_id = models.PositiveBigIntegerField(null=True, blank=True)
    created_date = models.DateTimeField(auto_now_add=True)
    modified_date = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pk"]
        indexes = [
            models.Index(fields=["channel", "version_date"], name="failed_channel_version"),
            models.Index(fields=["content_type", "object_id"], name="failed_object"),
        ]

    def __str__(self) -> str:
        return f"{self.reason_type} failure of {self.content_type_id}:{self.object_id}"
