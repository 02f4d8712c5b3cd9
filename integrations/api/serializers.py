from __future__ import annotations

from typing import Any

from rest_framework import serializers

from common.fields import (
    INT32_MAX,
    INT64_MAX,
    StrictBooleanField,
    StrictChoiceField,
    StrictIntegerField,
    UTCDateTimeField,
    format_datetime_utc,
)

from ..choices import ReasonType
from ..models import Channel, FailedIntegration, IntegrationAction
from ..selectors import content_type_exists

# The fields of a failed integration as the API answers them, in the contract's order.
FIELDS: tuple[str, ...] = (
    "pk",
    "channel",
    "version_date",
    "reason_type",
    "is_active",
    "content_type",
    "object_id",
    "expiration_date",
    "retry_count",
    "max_retry_count",
    "retry_interval",
    "integration_action",
    "log_id",
    "created_date",
    "modified_date",
)


def failed_integration_data(failed: FailedIntegration) -> dict[str, Any]:
    """The JSON object of one failed integration."""
    return {
        "pk": failed.pk,
        "channel": failed.channel_id,
        "version_date": format_datetime_utc(failed.version_date),
        "reason_type": failed.reason_type,
        "is_active": failed.is_active,
        "content_type": failed.content_type_id,
        "object_id": failed.object_id,
        "expiration_date": format_datetime_utc(failed.expiration_date),
        "retry_count": failed.retry_count,
        "max_retry_count": failed.max_retry_count,
        "retry_interval": failed.retry_interval,
        "integration_action": failed.integration_action_id,
        "log_id": failed.log_id,
        "created_date": format_datetime_utc(failed.created_date),
        "modified_date": format_datetime_utc(failed.modified_date),
    }


class FailedIntegrationWriteSerializer(serializers.Serializer):
    """Validates a create (POST), a full update (PUT) or a partial one (PATCH, `partial=True`).

    The channel is the URL's, passed as `context["channel"]`; a body may repeat it but not name
    another. Foreign keys are checked here, in one place, with their field named in the error.
    """

    channel = StrictIntegerField(required=False, source="channel_id")
    version_date = UTCDateTimeField()
    reason_type = StrictChoiceField(choices=ReasonType.choices)
    is_active = StrictBooleanField(required=False)
    content_type = StrictIntegerField(source="content_type_id", min_value=1)
    object_id = StrictIntegerField(min_value=0, max_value=INT64_MAX)
    expiration_date = UTCDateTimeField(required=False, allow_null=True)
    retry_count = StrictIntegerField(required=False, min_value=0, max_value=INT32_MAX)
    max_retry_count = StrictIntegerField(required=False, min_value=0, max_value=INT32_MAX)
    retry_interval = StrictIntegerField(required=False, min_value=0, max_value=INT32_MAX)
    integration_action = StrictIntegerField(
        required=False, allow_null=True, min_value=1, source="integration_action_id"
    )
    log_id = StrictIntegerField(required=False, allow_null=True, min_value=0, max_value=INT64_MAX)

    @property
    def url_channel(self) -> Channel:
        return self.context["channel"]

    def validate_channel(self, value: int) -> int:
        if value != self.url_channel.pk:
            raise serializers.ValidationError(
                f"Must be the channel of the URL ({self.url_channel.pk}) or left out."
            )
        return value

    def validate_content_type(self, value: int) -> int:
        if not content_type_exists(value):
            raise serializers.ValidationError(
                f'Invalid pk "{value}" - object does not exist. See /api/v1/content_types/.'
            )
        return value

    def validate_integration_action(self, value: int | None) -> int | None:
        if value is None:
            return None
        owner = (
            IntegrationAction.objects.filter(pk=value).values_list("channel_id", flat=True).first()
        )
        if owner is None:
            raise serializers.ValidationError(f'Invalid pk "{value}" - object does not exist.')
        if owner != self.url_channel.pk:
            raise serializers.ValidationError(
                f"Integration action {value} belongs to another channel."
            )
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The channel is the URL's: it is not a field that a write changes.
        attrs.pop("channel_id", None)
        return attrs
