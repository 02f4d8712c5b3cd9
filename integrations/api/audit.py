"""`GET /api/v1/audit/`: the operator actions on the channels the user may read, newest first,
filterable by `channel`, `user` (a username), `action`, `source` and time (`since`, `until`)."""

from __future__ import annotations

from django import forms
from rest_framework.exceptions import ValidationError

from common.fields import format_datetime_utc
from common.pagination import paginated_response
from common.params import int_param, str_param
from common.views_base import JSONAPIView
from integrations.api.access import readable_channels
from integrations.models import AuditEntry
from integrations.reads.filtersets import BeyondTheYears, DateTimeField

TIME_PARAMS = {"since": "at__gte", "until": "at__lt"}


def audit_data(entry: AuditEntry) -> dict:
    return {
        "id": entry.pk,
        "at": format_datetime_utc(entry.at),
        "user": entry.username or None,
        "channel": entry.channel_id,
        "action": entry.action,
        "source": entry.source,
        "filters": entry.filters,
        "record": entry.record,
        "dry_run": entry.dry_run,
        "reset_count": entry.reset_count,
        "matched": entry.matched,
        "affected": entry.affected,
        "outcome": entry.outcome,
        "operation": entry.bulk_action_id,
    }


def audit_entries(user, params):
    """The entries `user` may see that the parameters select (a bad value: 400 naming it)."""
    entries = AuditEntry.objects.filter(channel__in=readable_channels(user).values("pk"))
    channel = int_param(params, "channel", minimum=1)
    if channel is not None:
        entries = entries.filter(channel_id=channel)
    for name, lookup in (("user", "username"), ("action", "action"), ("source", "source")):
        value = str_param(params, name)
        if value is not None:
            entries = entries.filter(**{lookup: value})
    for name, lookup in TIME_PARAMS.items():
        raw = params.get(name)
        if raw:
            try:
                value = DateTimeField().clean(raw)
            except forms.ValidationError as error:
                raise ValidationError({name: list(error.messages)}) from None
            if isinstance(value, BeyondTheYears):
                raise ValidationError({name: ["Years 0001 to 9999 in UTC."]})
            entries = entries.filter(**{lookup: value})
    return entries.order_by("-at", "-pk")


class AuditListView(JSONAPIView):
    def get(self, request):
        return paginated_response(
            request, audit_entries(request.user, request.query_params), audit_data
        )
