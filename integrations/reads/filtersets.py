"""The one FilterSet of failed integrations: the list, the stats, the bulk actions and the
operator console all take these query parameters.

Conventions of the original API: Django lookups in the query string (`object_id__in=1,2,3`,
`version_date__gte=...`), `sort=field` / `sort=-field` (several, comma-separated). A bad value
for a known parameter answers 400 naming it; unknown parameters are ignored.

The filters of the fields are made from the field registry (`records.registry`): its lookups,
kinds and bounds. Each filter's rule is one `Q` (`RecordFilter.q`): querysets filter by it, and
the PostgreSQL fast path runs the SQL Django compiles from it (`query.ListQuery.where_sql`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import django_filters
from django import forms
from django.contrib.contenttypes.models import ContentType
from django.db.models import F, Field, ForeignKey, Q
from django.db.models.expressions import OrderBy
from django.db.models.lookups import In
from django.utils import timezone

from common.fields import INT64_MAX, parse_datetime_utc
from integrations.choices import State
from integrations.models import FailedIntegration
from integrations.records.registry import (
    BOOL,
    CHOICE,
    DATETIME,
    IN,
    INT,
    ISNULL,
    RECORD_FIELDS,
    SORTABLE,
    RecordField,
)


@dataclass(frozen=True)
class BeyondTheYears:
    """A time before year 1 (`after` false) or after 9999 (`after` true) once in UTC: every
    stored time lies on one side of it."""

    after: bool


BEFORE_EVERY_TIME, AFTER_EVERY_TIME = BeyondTheYears(after=False), BeyondTheYears(after=True)
MAX_LIST_ITEMS = 1000
SORT_FIELDS = SORTABLE
INT64_MIN = -(2**63)


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

    A time before year 1 or after 9999 once in UTC is read as `BeyondTheYears`: no stored time
    lies beyond it (see DateTimeFilter).
    """

    default_error_messages = {
        "invalid": "Enter a date-time in RFC 3339, e.g. 2025-06-27T08:38:26Z.",
    }

    def to_python(self, value):
        if value in self.empty_values:
            return None
        text = re.sub(r" ([0-9]{2}:[0-9]{2})\Z", r"+\1", value.strip())
        try:
            return parse_datetime_utc(text)
        except OverflowError:
            return BEFORE_EVERY_TIME if int(text[:4]) < 5000 else AFTER_EVERY_TIME
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


class AnyOf(In):
    """`field__any_of=[...]`: `IN (...)` on SQLite, `= ANY(%s)` with one array on PostgreSQL,
    so that a list of any length is one prepared statement."""

    lookup_name = "any_of"

    def as_postgresql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} = ANY(%s)", [*lhs_params, list(self.rhs)]


Field.register_lookup(AnyOf)
ForeignKey.register_lookup(AnyOf)


class RecordFilter(django_filters.Filter):
    """A filter of the list, whose rule is the `Q` of `q()`.

    `fast = False`: the fast path has no SQL for it (its rule joins another table), and a list
    using it takes the regular path.
    """

    fast = True
    record_field: RecordField | None = None

    def q(self, value) -> Q:
        lookup = "any_of" if self.lookup_expr == IN else self.lookup_expr
        return Q(**{f"{self.field_name}__{lookup}": value})

    def filter(self, qs, value):
        if value in django_filters.constants.EMPTY_VALUES:
            return qs
        return qs.filter(self.q(value))

    def sql_shape(self, value):
        """What the compiled SQL of `q(value)` depends on besides the filter (None: the value
        only as its parameter), or NOT_CACHED when it must be compiled for every value."""
        if self.lookup_expr == ISNULL:
            return bool(value)
        return None

    def sql_params(self, value) -> list:
        """The compiled SQL's parameters: the value itself, or none for `isnull`."""
        if self.lookup_expr == ISNULL:
            return []
        if self.lookup_expr == IN:
            return [list(value)]
        return [value]

    @property
    def columns(self) -> frozenset[str]:
        """The columns the rule tests."""
        field = self.record_field
        return frozenset({field.column} if field is not None else ())


NOT_CACHED = object()


class IntegerFilter(RecordFilter):
    field_class = IntegerField


class IntegerInFilter(django_filters.BaseInFilter, IntegerFilter):
    pass


class DateTimeFilter(RecordFilter):
    field_class = DateTimeField

    def q(self, value) -> Q:
        if not isinstance(value, BeyondTheYears):
            return super().q(value)
        # Every stored time is after a time before year 1 and before one after 9999.
        wanted_after = self.lookup_expr in ("gt", "gte")
        wanted_before = self.lookup_expr in ("lt", "lte")
        if (wanted_after and not value.after) or (wanted_before and value.after):
            return Q(**{f"{self.field_name}__isnull": False})
        return Q(pk__in=[])

    def sql_shape(self, value):
        return NOT_CACHED if isinstance(value, BeyondTheYears) else super().sql_shape(value)


class BooleanFilter(RecordFilter):
    field_class = BooleanField


class ChoiceFilter(RecordFilter, django_filters.ChoiceFilter):
    pass


class ChoiceInFilter(django_filters.BaseInFilter, ChoiceFilter):
    pass


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


class ContentTypeFilter(RecordFilter):
    field_class = ContentTypeField


class ContentTypeInFilter(django_filters.BaseInFilter, ContentTypeFilter):
    pass


class ChannelFilter(IntegerFilter):
    """The original API's `channel`: any integer; one other than the URL's gives an empty
    page (the URL's channel is always applied as well)."""

    def q(self, value) -> Q:
        if not INT64_MIN <= value <= INT64_MAX:
            return Q(pk__in=[])
        return Q(channel_id=value)

    def sql_shape(self, value):
        return NOT_CACHED


class ExpiredFilter(BooleanFilter):
    """`expiration_date` has passed (a record without one never expires)."""

    def q(self, value) -> Q:
        expired = Q(expiration_date__lt=timezone.now())
        return expired if value else ~expired

    def sql_shape(self, value):
        return NOT_CACHED

    @property
    def columns(self) -> frozenset[str]:
        return frozenset({"expiration_date"})


class StateFilter(ChoiceFilter):
    """The derived retry state (see states.record_state)."""

    fast = False

    def q(self, value) -> Q:
        from integrations.lifecycle.states import state_q

        return state_q(value, now=timezone.now())

    @property
    def columns(self) -> frozenset[str]:
        return frozenset()


class StateInFilter(django_filters.BaseInFilter, StateFilter):
    def q(self, value) -> Q:
        from integrations.lifecycle.states import states_q

        return states_q(value, now=timezone.now())


class SortFilter(django_filters.OrderingFilter):
    """`sort=field,-other` (read by `query.ListQuery`). The pk breaks ties, so that pages are
    stable; empty values sort last ascending and first descending on every database
    (PostgreSQL's order)."""


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


_VALUE_FILTERS = {
    INT: (IntegerFilter, IntegerInFilter),
    DATETIME: (DateTimeFilter, None),
    BOOL: (BooleanFilter, None),
    CHOICE: (ChoiceFilter, ChoiceInFilter),
}


def _field_filter(field: RecordField, lookup: str) -> RecordFilter:
    """The filter of one lookup of a registry field."""
    kwargs = {"field_name": "pk" if field.name == "pk" else field.target, "lookup_expr": lookup}
    if lookup == ISNULL:
        flt = BooleanFilter(**kwargs)
    else:
        if field.by_content_type_name:
            single, many = ContentTypeFilter, ContentTypeInFilter
        else:
            single, many = _VALUE_FILTERS[field.kind]
        cls = many if lookup == IN else single
        if field.kind == INT and not field.by_content_type_name:
            kwargs["min_value"], kwargs["max_value"] = field.bounds
        if field.kind == CHOICE:
            kwargs["choices"] = field.model_field.choices
        flt = cls(**kwargs)
    flt.record_field = field
    return flt


def record_filters() -> dict[str, django_filters.Filter]:
    """Every query parameter of the list, by name."""
    filters: dict[str, django_filters.Filter] = {
        name: _field_filter(field, lookup)
        for field in RECORD_FIELDS
        for name, lookup in field.filter_names()
    }
    filters["channel"] = ChannelFilter(field_name="channel_id")
    filters["state"] = StateFilter(choices=State.choices)
    filters["state__in"] = StateInFilter(
        field_name="state", lookup_expr="in", choices=State.choices
    )
    filters["expired"] = ExpiredFilter(field_name="expiration_date")
    filters["sort"] = SortFilter(
        fields=SORT_FIELDS,
        error_messages={
            "invalid_choice": (
                "Cannot sort by %(value)s; sort by any of "
                + ", ".join(SORT_FIELDS)
                + " (a leading - for descending), comma-separated."
            )
        },
    )
    return filters


class _Meta:
    model = FailedIntegration
    fields: list[str] = []


def _filter_queryset(self, queryset):
    """The queryset filtered and sorted as the service does it (`query.ListQuery`)."""
    from integrations.reads.query import ListQuery

    return ListQuery.from_params(self.data).apply(queryset)


FailedIntegrationFilterSet = type(
    "FailedIntegrationFilterSet",
    (django_filters.FilterSet,),
    {
        **record_filters(),
        "Meta": _Meta,
        "__module__": __name__,
        "__doc__": "The list's filters, declared from the field registry.",
        "filter_queryset": _filter_queryset,
    },
)


def list_problem(value) -> str | None:
    """What is wrong with a comma-separated value, if anything."""
    if not isinstance(value, list):
        return None
    if len(value) > MAX_LIST_ITEMS:
        return f"Give at most {MAX_LIST_ITEMS} values."
    if any(item in (None, "") for item in value):
        return "Give comma-separated values without empty ones."
    return None
