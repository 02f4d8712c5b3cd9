from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from django import forms
from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.db import models

from common.fields import format_datetime_utc
from integrations.channels import services as channel_services
from integrations.dispatch.signing import rotate, secret_status
from integrations.models import (
    MIN_SECRET_LENGTH,
    AuditEntry,
    BulkAction,
    Channel,
    ChannelGrant,
    EngineEvent,
    FailedIntegration,
    IntegrationAction,
    RetryAttempt,
    RetryPolicy,
)
from integrations.operations.audit import audit
from integrations.records import services
from integrations.records.registry import WRITABLE
from integrations.records.validation import check_references, validate_item

# What the retry engine keeps: shown, never edited by hand.
ENGINE_FIELDS = (
    "created_date",
    "modified_date",
    "parked",
    "resolution",
    "resolved_at",
    "next_retry_at",
    "retry_by_hand",
    "last_attempt_at",
    "last_error",
    "lease_owner",
    "lease_expires_at",
)


class ChannelGrantInline(admin.TabularInline):
    model = ChannelGrant
    extra = 1
    autocomplete_fields = ("user",)


class RetryPolicyInline(admin.TabularInline):
    model = RetryPolicy
    extra = 0


class EndpointField(forms.URLField):
    """An endpoint typed without a scheme is taken as https."""

    def __init__(self, **kwargs):
        kwargs.setdefault("assume_scheme", "https")
        super().__init__(**kwargs)


class ChannelForm(forms.ModelForm):
    """A channel's settings. Its signing secret is write-only: replaced or removed here, never
    shown (`signing.rotate`)."""

    new_signing_secret = forms.CharField(
        required=False,
        strip=False,
        min_length=MIN_SECRET_LENGTH,
        max_length=Channel._meta.get_field("signing_secret").max_length,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=(
            "Replaces the secret that signs retry requests; the previous one goes on signing "
            "beside it for a while (SIGNING_SECRET_OVERLAP_HOURS), so that the channel app can "
            "switch. Leave blank to keep the current one."
        ),
    )
    remove_signing_secret = forms.BooleanField(
        required=False, help_text="Stop signing retry requests (the previous secret too)."
    )

    class Meta:
        model = Channel
        fields = channel_services.PLAIN_SETTINGS
        field_classes = {"retry_endpoint": EndpointField}


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    inlines = (ChannelGrantInline, RetryPolicyInline)
    list_display = ("id", "name", "channel_type", "is_active", "retry_endpoint")
    list_filter = ("channel_type", "is_active")
    search_fields = ("name",)
    readonly_fields = ("signing_secret_status", "dispatch_status")
    SETTINGS = (*channel_services.PLAIN_SETTINGS, "signing_secret_status", "dispatch_status")
    actions = ("pause_dispatch", "resume_dispatch")

    def get_fields(self, request, obj=None):
        if obj is not None and not self.has_change_permission(request, obj):
            return self.SETTINGS  # nothing to write: no write-only inputs
        return (*self.SETTINGS, "new_signing_secret", "remove_signing_secret")

    @admin.display(description="Signing secret")
    def signing_secret_status(self, obj):
        return secret_status(obj) if obj is not None and obj.pk else "not set"

    @admin.display(description="Dispatch")
    def dispatch_status(self, obj):
        if obj is None or not obj.pk:
            return "-"
        health = channel_services.dispatch_health(obj)
        return (
            f"{health['state']}; circuit {health['circuit']}; {health['due']} due, "
            f"{health['held']} held, {health['in_flight']} in flight"
        )

    def _hold(self, request, queryset, action: str) -> None:
        for channel in queryset:
            channel_services.channel_hold(
                channel=channel, action=action, user=request.user, source=AuditEntry.Source.ADMIN
            )
        self.message_user(request, f"{action.title()}d the dispatch of {queryset.count()}.")

    @admin.action(description="Pause the dispatch of the selected channels")
    def pause_dispatch(self, request, queryset):
        self._hold(request, queryset, channel_services.PAUSE)

    @admin.action(description="Resume the dispatch of the selected channels")
    def resume_dispatch(self, request, queryset):
        self._hold(request, queryset, channel_services.RESUME)

    def save_model(self, request, obj, form, change):
        if form.cleaned_data.get("remove_signing_secret"):
            rotate(obj, "")
        elif form.cleaned_data.get("new_signing_secret"):
            rotate(obj, form.cleaned_data["new_signing_secret"])
        super().save_model(request, obj, form, change)


@admin.register(IntegrationAction)
class IntegrationActionAdmin(admin.ModelAdmin):
    list_display = ("id", "channel", "content_type", "object_id", "remote_id", "status")
    list_filter = ("channel", "content_type")
    search_fields = ("remote_id", "object_id")
    raw_id_fields = ("channel",)


class FailedIntegrationForm(forms.ModelForm):
    """The record's form: the fields a channel app writes, checked by the same rules as the
    API's (`validation`); what the retry engine keeps is shown read-only."""

    class Meta:
        model = FailedIntegration
        fields = [field.name for field in WRITABLE]

    def clean(self):
        cleaned = super().clean()
        channel = cleaned.get("channel") or getattr(self.instance, "channel", None)
        if channel is None or self.errors:
            return cleaned
        payload = self.api_payload()
        values, errors = validate_item(
            payload, channel_id=channel.pk, partial=self.instance.pk is not None
        )
        if not errors:
            errors = check_references([values], channel_id=channel.pk)[0]
        for name, messages in errors.items():
            self.add_error(name if name in self.fields else None, messages)
        return cleaned

    def api_payload(self) -> dict:
        """The changed fields as the API takes them (a create: every field)."""
        names = self.changed_data if self.instance.pk is not None else list(self.fields)
        payload = {}
        for name in names:
            value = self.cleaned_data.get(name)
            if isinstance(value, models.Model):
                value = value.pk
            elif isinstance(value, dt.datetime):
                value = format_datetime_utc(value)
            payload[name] = value
        return payload


def _operator_action(name: str, description: str):
    def action(modeladmin, request, queryset):
        matched = affected = 0
        # One audit entry per channel of the selection (the records are named by their pks).
        for channel_id in sorted(set(queryset.values_list("channel_id", flat=True))):
            selected = queryset.filter(channel_id=channel_id)
            pks = sorted(selected.values_list("pk", flat=True))
            result = services.failed_integration_action(queryset=selected, action=name)
            audit(
                user=request.user,
                channel_id=channel_id,
                action=name,
                source=AuditEntry.Source.ADMIN,
                outcome="done",
                filters=urlencode({"pk__in": ",".join(map(str, pks))}),
                matched=result.matched,
                affected=result.affected,
            )
            matched, affected = matched + result.matched, affected + result.affected
        modeladmin.message_user(
            request, f"{description}: {affected} of {matched} selected records."
        )

    action.__name__ = name
    action.short_description = description
    return action


@admin.register(FailedIntegration)
class FailedIntegrationAdmin(admin.ModelAdmin):
    """Writes go through the services, as the API's do: an update reschedules the record and
    supersedes older failures of its object; the actions are the API's operator actions."""

    form = FailedIntegrationForm
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
        "next_retry_at",
    )
    list_filter = ("reason_type", "is_active", "parked", "content_type")
    search_fields = ("object_id",)
    raw_id_fields = ("channel", "integration_action")
    readonly_fields = ENGINE_FIELDS
    actions = [
        _operator_action("retry", "Retry now"),
        _operator_action("park", "Park"),
        _operator_action("unpark", "Unpark"),
        _operator_action("deactivate", "Deactivate"),
    ]
    # Counting millions of rows for the change list is not worth its time.
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        # The channel of a stored record is the URL's in the API: it is not moved here either.
        return ("channel", *ENGINE_FIELDS) if obj is not None else ENGINE_FIELDS

    def save_model(self, request, obj, form, change):
        payload = form.api_payload()
        if change:
            stored = FailedIntegration.objects.get(pk=obj.pk)
            saved = services.failed_integration_update(failed=stored, payload=payload, partial=True)
        else:
            saved = services.failed_integration_create(channel=obj.channel, payload=payload)
        obj.pk = saved.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        services.failed_integration_delete(failed=obj)


@admin.register(ContentType)
class ContentTypeAdmin(admin.ModelAdmin):
    """Operators add the back office's object kinds here (or with `add_content_type`)."""

    list_display = ("id", "app_label", "model")
    search_fields = ("app_label", "model")
    ordering = ("app_label", "model")


@admin.register(ChannelGrant)
class ChannelGrantAdmin(admin.ModelAdmin):
    list_display = ("user", "channel", "role", "created_date")
    list_filter = ("role", "channel")
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


class ReadOnlyAdmin(admin.ModelAdmin):
    """A record of what happened: shown, never written by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("at", "username", "channel", "action", "source", "dry_run", "matched")
    list_display += ("affected", "outcome")
    list_filter = ("action", "source", "outcome", "dry_run")
    search_fields = ("username", "filters")
    date_hierarchy = "at"


@admin.register(BulkAction)
class BulkActionAdmin(ReadOnlyAdmin):
    list_display = ("id", "channel", "action", "status", "total", "processed", "affected")
    list_filter = ("status", "action")
    exclude = ("pks", "token_hash")
