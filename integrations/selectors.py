"""Reads."""

from __future__ import annotations

from django.contrib.contenttypes.models import ContentType
from django.db.models import QuerySet

from common.fields import INT64_MAX

from .models import Channel, FailedIntegration


def channel_get(*, channel_id: int) -> Channel | None:
    if not 0 < channel_id <= INT64_MAX:
        return None
    return Channel.objects.filter(pk=channel_id).first()


def failed_integration_list(*, channel: Channel) -> QuerySet[FailedIntegration]:
    return FailedIntegration.objects.filter(channel=channel).order_by("pk")


def failed_integration_get(*, channel: Channel, pk: int) -> FailedIntegration | None:
    if not 0 < pk <= INT64_MAX:
        return None
    return FailedIntegration.objects.filter(channel=channel, pk=pk).first()


def content_type_exists(content_type_id: int) -> bool:
    try:
        ContentType.objects.get_for_id(content_type_id)
    except ContentType.DoesNotExist:
        return False
    return True


def content_type_list(*, app_label: str | None = None, model: str | None = None):
    queryset = ContentType.objects.order_by("pk")
    if app_label:
        queryset = queryset.filter(app_label=app_label)
    if model:
        queryset = queryset.filter(model=model)
    return queryset
