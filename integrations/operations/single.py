"""An operator action on one record (the API's `.../{id}/{action}/`, the console's buttons)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

from common.exceptions import Conflict
from integrations.models import FailedIntegration
from integrations.operations.audit import audit
from integrations.records import services

PAST = {"retry": "retried", "park": "parked", "unpark": "unparked", "deactivate": "deactivated"}


def record_action(
    *,
    failed: FailedIntegration,
    action: str,
    user: AbstractBaseUser,
    source: str,
    reset_count: bool = False,
) -> FailedIntegration:
    """Runs `action` on `failed` and records it in the audit log; answers the record afterwards.
    A record that is not active cannot be retried or parked (409)."""
    if not failed.is_active and action in ("retry", "park"):
        raise Conflict(
            f"Failed integration {failed.pk} is not active; it cannot be {PAST[action]}."
        )
    result = services.failed_integration_action(
        queryset=FailedIntegration.objects.filter(pk=failed.pk),
        action=action,
        reset_count=reset_count,
    )
    audit(
        user=user,
        channel_id=failed.channel_id,
        action=action,
        source=source,
        outcome="done",
        record=failed.pk,
        reset_count=reset_count,
        matched=result.matched,
        affected=result.affected,
    )
    failed.refresh_from_db()
    return failed
