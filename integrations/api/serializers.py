from __future__ import annotations

from typing import Any

from common.fields import format_datetime_utc

from ..models import FailedIntegration

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
