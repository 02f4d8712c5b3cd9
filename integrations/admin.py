from __future__ import annotations

from django.contrib import admin
from django.contrib.contenttypes.models import ContentType

from .models import (
    Channel,
    ChannelGrant,
    EngineEvent,
    FailedIntegration,
    IntegrationAction,
    RetryAttempt,
    RetryPolicy,
)


class ChannelGrantInline(admin.TabularInline):
    model = ChannelGrant
    extra = 1
    autocomplete_fields = ("user",)


class RetryPolicyInline(admin.TabularInline):
    model = RetryPolicy
    extra = 0


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    inlines = (ChannelGrantInline, RetryPolicyInline)
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


@admin.register(ChannelGrant)
class ChannelGrantAdmin(admin.ModelAdmin):
    list_display = ("user", "channel", "can_write", "created_date")
    list_filter = ("can_write", "channel")
    search_fields = ("user__username",)
    autocomplete_fields = ("user",)


@admin.register(RetryAttempt)
class RetryAttemptAdmin(admin.ModelAdmin):
    list_display = ("failed_integration", "number", "outcome", "http_status", "started_at")
    list_filter = ("outcome",)
    raw_id_fields = ("failed_integration",)
    show_full_result_count = False


@admin.register(EngineEvent)
class EngineEventAdmin(admin.ModelAdmin):
    list_display = ("kind", "failed_integration", "channel", "created_date", "delivered_at")
    list_filter = ("kind",)
    raw_id_fields = ("failed_integration", "channel")
