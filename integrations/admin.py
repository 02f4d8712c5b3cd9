from __future__ import annotations

from django.contrib import admin
from django.contrib.contenttypes.models import ContentType

from .models import Channel, FailedIntegration, IntegrationAction


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "channel_type", "is_active", "retry_endpoint")
    list_filter = ("channel_type", "is_active")
    search_fields = ("name",)


@admin.register(IntegrationAction)
class IntegrationActionAdmin(admin.ModelAdmin):
    list_display = ("id", "channel", "content_type", "object_id", "remote_id", "status")
    list_filter = ("channel", "content_type")
    search_fields = ("remote_id", "object_id")
    raw_id_fields = ("channel",)


@admin.register(FailedIntegration)
class FailedIntegrationAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "channel",
        "reason_type",
        "content_type",
        "object_id",
        "is_active",
        "retry_count",
        "max_retry_count",
        "version_date",
    )
    list_filter = ("reason_type", "is_active", "content_type")
    search_fields = ("object_id",)
    raw_id_fields = ("channel", "integration_action")
    readonly_fields = ("created_date", "modified_date")
    # Counting millions of rows for the change list is not worth its time.
    show_full_result_count = False


@admin.register(ContentType)
class ContentTypeAdmin(admin.ModelAdmin):
    """Operators add the back office's object kinds here (or with `add_content_type`)."""

    list_display = ("id", "app_label", "model")
    search_fields = ("app_label", "model")
    ordering = ("app_label", "model")
