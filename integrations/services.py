"""Writes. Views and commands call these; they never write to the models themselves."""

from __future__ import annotations

from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import transaction

from .models import Channel, FailedIntegration


def failed_integration_create(*, channel: Channel, data: dict[str, Any]) -> FailedIntegration:
    failed = FailedIntegration(channel=channel, **data)
    failed.save(force_insert=True)
    return failed


@transaction.atomic
def failed_integration_update(
    *, failed: FailedIntegration, data: dict[str, Any]
) -> FailedIntegration:
    """Writes only the given fields, so that concurrent updates of other fields are kept."""
    for name, value in data.items():
        setattr(failed, name, value)
    failed.save(update_fields=[*data, "modified_date"])
    return failed


def failed_integration_delete(*, failed: FailedIntegration) -> None:
    failed.delete()


def content_type_get_or_create(*, app_label: str, model: str) -> tuple[ContentType, bool]:
    """Makes a kind of back-office object known to the service (idempotent)."""
    return ContentType.objects.get_or_create(app_label=app_label, model=model)
