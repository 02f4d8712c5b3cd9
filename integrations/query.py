"""The query parameters of a list of failed integrations, read once and applied two ways: to a
queryset (any database) and as SQL (the PostgreSQL fast path).

Reading the parameters goes through the FilterSet's own filters and their form fields (built
once, reused for every request): only the parameters a request carries are looked at, which is
what keeps a filtered list cheap; a whole django-filter form costs milliseconds per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from django import forms
from django.core.exceptions import FieldDoesNotExist
from django.db.models import QuerySet
from rest_framework.exceptions import ValidationError

from .filtersets import (
    SORT_FIELDS,
    FailedIntegrationFilterSet,
    SQLFilter,
    list_problem,
    sort_expression,
    with_tie_breaker,
)

FILTERS: dict[str, SQLFilter] = {
    name: flt
    for name, flt in FailedIntegrationFilterSet.base_filters.items()
    if isinstance(flt, SQLFilter)
}
SORT_PARAM = "sort"
SORT_COLUMNS = {name: ("id" if name == "pk" else name) for name in SORT_FIELDS}
_sort_field = FailedIntegrationFilterSet.base_filters[SORT_PARAM].field
# What a sort column is added to in an opaque ORDER BY key (integers: 0).
OPAQUE_ZERO = {
    name: "interval '0 s'"
    for name in ("version_date", "expiration_date", "created_date", "modified_date")
}


@dataclass(frozen=True)
class ListQuery:
    # (parameter name, filter, value) of each filter the request gave.
    filters: tuple[tuple[str, SQLFilter, Any], ...] = ()
    # Sort keys as field names, "-" for descending, always ending with the pk.
    sort: tuple[str, ...] = ("pk",)

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> ListQuery:
        """Reads the filters and `sort` of `params`; a bad value raises a 400 naming it."""
        filters = []
        errors: dict[str, list[str]] = {}
        sort: tuple[str, ...] = ("pk",)
        for name in params:
            flt = FILTERS.get(name)
            if flt is None and name != SORT_PARAM:
                continue  # unknown parameters are ignored, as in the original API
            form_field = flt.field if flt is not None else _sort_field
            # The widget reads the value as the form would (a comma-separated one as a list).
            raw = form_field.widget.value_from_datadict(params, {}, name)
            if raw in (None, "", []):
                continue
            try:
                value = form_field.clean(raw)
            except forms.ValidationError as error:
                errors[name] = list(error.messages)
                continue
            problem = list_problem(value)
            if problem:
                errors[name] = [problem]
            elif flt is None:
                sort = with_tie_breaker(value)
            elif value is not None:
                filters.append((name, flt, value))
        if errors:
            raise ValidationError(errors)
        return cls(filters=tuple(filters), sort=sort)

    def apply(self, queryset: QuerySet) -> QuerySet:
        for _, flt, value in self.filters:
            queryset = flt.filter(queryset, value)
        return queryset.order_by(*(sort_expression(name) for name in self.sort))

    def where_sql(self, alias: str) -> tuple[list[str], list[Any]]:
        """SQL conditions on the table aliased `alias` (to be AND-ed) and their parameters."""
        conditions: list[str] = []
        parameters: list[Any] = []
        for _, flt, value in self.filters:
            condition, values = flt.to_sql(value, alias)
            conditions.append(condition)
            parameters.extend(values)
        return conditions, parameters

    def order_sql(self, alias: str, *, opaque: bool = False) -> str:
        """ORDER BY keys on the table's columns (qualified by `alias`, so that they never name
        an output column of the same name, which no index could serve). `opaque`: the same
        order on expressions no index serves, so that PostgreSQL reads the rows through the
        filters' indexes and sorts them, rather than walking a sort index."""
        keys = []
        for name in self.sort:
            descending = name.startswith("-")
            column = SORT_COLUMNS[name.lstrip("-")]
            key = f"{alias}.{column}"
            if opaque:
                key = f"({key} + {OPAQUE_ZERO.get(column, '0')})"
            keys.append(f"{key} DESC NULLS FIRST" if descending else f"{key} ASC NULLS LAST")
        return ", ".join(keys)

    @property
    def sort_columns(self) -> tuple[str, ...]:
        """The columns of the sort keys, the pk's (`id`) among them."""
        return tuple(dict.fromkeys(SORT_COLUMNS[name.lstrip("-")] for name in self.sort))

    @property
    def filter_names(self) -> frozenset[str]:
        return frozenset(name for name, _, _ in self.filters)

    @property
    def filter_columns(self) -> frozenset[str]:
        """The columns the filters test (`exhausted` is computed from the retry counts)."""
        columns = set()
        for _, flt, _ in self.filters:
            if flt.field_name == "exhausted":
                columns.update(("retry_count", "max_retry_count"))
            with suppress(FieldDoesNotExist):  # `state` is computed, not a column
                columns.add(flt.column)
        return frozenset(columns)
