"""The one FilterSet of failed integrations: the list, the stats, the bulk actions and the
operator console all take these query parameters.

Conventions of the original API: Django lookups in the query string (`object_id__in=1,2,3`,
`version_date__gte=...`), `sort=field` / `sort=-field` (several, comma-separated). A bad value
for a known parameter answers 400 naming it; unknown parameters are ignored.
"""

from __future__ import annotations

import datetime as dt
import re

import django_filters
from django import forms
from django.contrib.contenttypes.models import ContentType
from django.db.models import F, Q
from django.db.models.expressions import OrderBy
from django.utils import timezone

from common.fields import INT32_MAX, INT64_MAX, parse_datetime_utc

from .choices import ReasonType, State
from .models import FailedIntegration

RANGE_LOOKUPS = ("gt", "gte", "lt", "lte")
EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)
LATEST = dt.datetime.max.replace(tzinfo=dt.UTC)
MAX_LIST_ITEMS = 1000
SORT_FIELDS = (
    "pk",
    "version_date",
    "expiration_date",
    "retry_count",
    "created_date",
    "modified_date",
)


class IntegerField(forms.IntegerField):
    """An integer with the storage's bounds; `1.0` or `1e3` are not integers here."""

    def to_python(self, value):
        if value in self.empty_values:
            return None
        if not re.fullmatch(r"-?[0-9]{1,100}", str(value).strip()):
            raise forms.ValidationError("A valid integer is required.", code="invalid")
        return int(value)


class DateTimeField(forms.Field):
    """RFC 3339, as in bodies. In a query string `+` reads as a space: ` 03:00` is `+03:00`.

    A time before year 1 or after 9999 once in UTC compares as the earliest or latest time: no
    stored time lies beyond either, so the answer is the same.
    """

    default_error_messages = {
        "invalid": "Enter a date-time in RFC 3339, e.g. 2025-06-27T08:38:26Z.",
    }

    def to_python(self, value):
        if value in self.empty_values:
            return None
        text = re.sub(r" (\d{2}:\d{2})$", r"+\1", value.strip())
        try:
            return parse_datetime_utc(text)
        except OverflowError:
            return EARLIEST if int(text[:4]) < 5000 else LATEST
        except ValueError:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None


class BooleanField(forms.Field):
    default_error_messages = {"invalid": "Enter true or false."}
    VALUES = {"true": True, "1": True, "false": False, "0": False}

    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            return self.VALUES[str(value).strip().lower()]
        except KeyError:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None

    def validate(self, value):
        pass


SQL_OPERATORS = {"exact": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


class SQLFilter(django_filters.Filter):
    """A filter that can also write itself as SQL, for the list's fast path on PostgreSQL.

    `filter()` (django-filter's, for querysets) and `to_sql()` must select the same rows; the
    test suite runs every filter through both. A filter with `fast = False` has no SQL form:
    a list using it takes the regular path.
    """

    fast = True

    @property
    def column(self) -> str:
        name = "id" if self.field_name == "pk" else self.field_name
        return FailedIntegration._meta.get_field(name).column

    def to_sql(self, value, alias: str) -> tuple[str, list]:
        column = f"{alias}.{self.column}"
        if self.lookup_expr == "in":
            return f"{column} = ANY(%s)", [list(value)]
        if self.lookup_expr == "isnull":
            return f"{column} IS {'' if value else 'NOT '}NULL", []
        return f"{column} {SQL_OPERATORS[self.lookup_expr]} %s", [value]


class IntegerFilter(SQLFilter):
    field_class = IntegerField


class IntegerInFilter(django_filters.BaseInFilter, IntegerFilter):
    pass


class DateTimeFilter(SQLFilter):
    field_class = DateTimeField


class BooleanFilter(SQLFilter):
    field_class = BooleanField


class ReasonTypeFilter(SQLFilter, django_filters.ChoiceFilter):
    pass


class ReasonTypeInFilter(django_filters.BaseInFilter, ReasonTypeFilter):
    pass


class ChannelFilter(IntegerFilter):
    """The original API's `channel`: any integer; one other than the URL's gives an empty
    page (the URL's channel is always applied as well)."""

    def filter(self, qs, value):
        if value is None:
            return qs
        if not -INT64_MAX - 1 <= value <= INT64_MAX:
            return qs.none()
        return qs.filter(channel_id=value)

    def to_sql(self, value, alias: str) -> tuple[str, list]:
        if not -INT64_MAX - 1 <= value <= INT64_MAX:
            return "FALSE", []
        return f"{alias}.channel_id = %s", [value]


class ExpiredFilter(BooleanFilter):
    """`expiration_date` has passed (a record without one never expires)."""

    def filter(self, qs, value):
        if value is None:
            return qs
        expired = Q(expiration_date__lt=timezone.now())
        return qs.filter(expired if value else ~expired)

    def to_sql(self, value, alias: str) -> tuple[str, list]:
        expired = f"({alias}.expiration_date IS NOT NULL AND {alias}.expiration_date < %s)"
        return (expired if value else f"NOT {expired}"), [timezone.now()]


class StateFilter(SQLFilter, django_filters.ChoiceFilter):
    """The derived retry state (see engine.record_state)."""

    fast = False

    def filter(self, qs, value):
        if value in (None, ""):
            return qs
        from .engine import state_q

        return qs.filter(state_q(value, now=timezone.now()))


class StateInFilter(django_filters.BaseInFilter, StateFilter):
    def filter(self, qs, value):
        if not value:
            return qs
        from .engine import state_q

        now = timezone.now()
        condition = Q(pk__in=[])
        for state in dict.fromkeys(value):  # each state once
            condition |= state_q(state, now=now)
        return qs.filter(condition)


class ContentTypeField(forms.Field):
    """A content type by id (`12`) or by name (`products.product`)."""

    default_error_messages = {
        "invalid": "Enter a content type id or app_label.model, e.g. products.product.",
        "unknown": "Unknown content type {value}.",
    }

    def to_python(self, value):
        if value in self.empty_values:
            return None
        value = str(value).strip()
        try:
            if re.fullmatch(r"[0-9]{1,18}", value):
                return ContentType.objects.get_for_id(int(value)).pk
            if re.fullmatch(r"[a-z][a-z0-9_]{0,99}\.[a-z][a-z0-9_]{0,99}", value):
                app_label, model = value.split(".", 1)
                return ContentType.objects.get_by_natural_key(app_label, model).pk
        except ContentType.DoesNotExist:
            raise forms.ValidationError(
                self.error_messages["unknown"].format(value=value), code="unknown"
            ) from None
        raise forms.ValidationError(self.error_messages["invalid"], code="invalid")


class ContentTypeFilter(SQLFilter):
    field_class = ContentTypeField


class ContentTypeInFilter(django_filters.BaseInFilter, ContentTypeFilter):
    pass


class SortFilter(django_filters.OrderingFilter):
    """`sort=field,-other`. The pk breaks ties, so that pages are stable; empty values sort
    last ascending and first descending on every database (PostgreSQL's order)."""

    def filter(self, qs, value):
        if not value:
            return qs
        names = with_tie_breaker([self.get_ordering_value(param) for param in value])
        return qs.order_by(*(sort_expression(name) for name in names))


def with_tie_breaker(names: list[str]) -> tuple[str, ...]:
    """The sort keys, ending with the pk (in the direction of the last key)."""
    names = list(names)
    if names[-1].lstrip("-") != "pk":
        names.append("-pk" if names[-1].startswith("-") else "pk")
    return tuple(names)


def sort_expression(name: str) -> OrderBy:
    if name.startswith("-"):
        return F(name[1:]).desc(nulls_first=True)
    return F(name).asc(nulls_last=True)


def _lookups(name: str, filter_class, **kwargs) -> dict[str, django_filters.Filter]:
    """`name` and `name__gt/__gte/__lt/__lte`."""
    filters = {name: filter_class(field_name=name, **kwargs)}
    for lookup in RANGE_LOOKUPS:
        filters[f"{name}__{lookup}"] = filter_class(field_name=name, lookup_expr=lookup, **kwargs)
    return filters


class FailedIntegrationFilterSet(django_filters.FilterSet):
    pk__in = IntegerInFilter(field_name="pk", lookup_expr="in", min_value=1, max_value=INT64_MAX)
    channel = ChannelFilter(field_name="channel_id")
    reason_type = ReasonTypeFilter(choices=ReasonType.choices)
    reason_type__in = ReasonTypeInFilter(
        field_name="reason_type", lookup_expr="in", choices=ReasonType.choices
    )
    is_active = BooleanFilter()
    content_type = ContentTypeFilter(field_name="content_type_id")
    content_type__in = ContentTypeInFilter(field_name="content_type_id", lookup_expr="in")
    object_id = IntegerFilter(min_value=0, max_value=INT64_MAX)
    object_id__in = IntegerInFilter(
        field_name="object_id", lookup_expr="in", min_value=0, max_value=INT64_MAX
    )
    integration_action = IntegerFilter(
        field_name="integration_action_id", min_value=1, max_value=INT64_MAX
    )
    integration_action__isnull = BooleanFilter(
        field_name="integration_action_id", lookup_expr="isnull"
    )
    log_id = IntegerFilter(min_value=0, max_value=INT64_MAX)
    log_id__isnull = BooleanFilter(field_name="log_id", lookup_expr="isnull")
    expiration_date__isnull = BooleanFilter(field_name="expiration_date", lookup_expr="isnull")
    locals().update(_lookups("version_date", DateTimeFilter))
    locals().update(_lookups("expiration_date", DateTimeFilter))
    locals().update(_lookups("created_date", DateTimeFilter))
    locals().update(_lookups("modified_date", DateTimeFilter))
    locals().update(_lookups("retry_count", IntegerFilter, min_value=0, max_value=INT32_MAX))
    locals().update(_lookups("max_retry_count", IntegerFilter, min_value=0, max_value=INT32_MAX))
    locals().update(_lookups("retry_interval", IntegerFilter, min_value=0, max_value=INT32_MAX))
    exhausted = BooleanFilter()
    parked = BooleanFilter()
    state = StateFilter(choices=State.choices)
    state__in = StateInFilter(field_name="state", lookup_expr="in", choices=State.choices)
    next_retry_at__isnull = BooleanFilter(field_name="next_retry_at", lookup_expr="isnull")
    locals().update(_lookups("next_retry_at", DateTimeFilter))
    locals().update(_lookups("last_attempt_at", DateTimeFilter))
    locals().update(_lookups("resolved_at", DateTimeFilter))
    expired = ExpiredFilter(field_name="expiration_date")
    sort = SortFilter(fields=SORT_FIELDS)

    class Meta:
        model = FailedIntegration
        fields: list[str] = []

    def is_valid(self) -> bool:
        valid = super().is_valid()
        for name, value in list(self.form.cleaned_data.items()) if valid else ():
            message = list_problem(value)
            if message:
                self.form.add_error(name, message)
        return valid and not self.form.errors


def list_problem(value) -> str | None:
    """What is wrong with a comma-separated value, if anything."""
    if not isinstance(value, list):
        return None
    if len(value) > MAX_LIST_ITEMS:
        return f"Give at most {MAX_LIST_ITEMS} values."
    if any(item in (None, "") for item in value):
        return "Give comma-separated values without empty ones."
    return None
