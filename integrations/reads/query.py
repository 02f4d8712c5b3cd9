"""The query parameters of a list of failed integrations, read once and applied two ways: to a
queryset (any database) and as the SQL Django compiles from the same `Q` (the PostgreSQL fast
path), compiled once per filter and shape.

Reading the parameters goes through the FilterSet's own filters and their form fields (built
once, reused for every request): only the parameters a request carries are looked at, which is
what keeps a filtered list cheap; a whole django-filter form costs milliseconds per request.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django import forms
from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db.models import DateTimeField, ExpressionWrapper, Q, QuerySet, Value
from rest_framework.exceptions import ValidationError

from common.database import compile_sql, inline_sql
from integrations.models import FailedIntegration
from integrations.reads.filtersets import (
    NOT_CACHED,
    SORT_FIELDS,
    FailedIntegrationFilterSet,
    RecordFilter,
    list_problem,
    sort_expression,
    with_tie_breaker,
)
from integrations.records.registry import BY_NAME

FILTERS: dict[str, RecordFilter] = {
    name: flt
    for name, flt in FailedIntegrationFilterSet.base_filters.items()
    if isinstance(flt, RecordFilter)
}
SORT_PARAM = "sort"
SORT_COLUMNS = {name: BY_NAME[name].column for name in SORT_FIELDS}


def order_sql(sort: tuple[str, ...], alias: str, *, opaque: bool = False) -> str:
    """ORDER BY the sort keys (names, "-" for descending) on the table aliased `alias`."""
    return _order_sql(sort, alias, opaque)


@functools.cache
def _order_sql(sort: tuple[str, ...], alias: str, opaque: bool) -> str:
    """The ORDER BY Django writes for `sort_expression` of each key; opaque: of the key plus a
    zero of its type, an expression no index serves."""
    keys = []
    for name in sort:
        expression = sort_expression(name)
        if opaque:
            field = BY_NAME[name.lstrip("-")].model_field
            zero = dt.timedelta(0) if isinstance(field, DateTimeField) else 0
            expression.expression = ExpressionWrapper(
                expression.expression + Value(zero), output_field=field
            )
        keys.append(inline_sql(*compile_sql(FailedIntegration, expression, alias)))
    return ", ".join(keys)


_sort_field = FailedIntegrationFilterSet.base_filters[SORT_PARAM].field
# (parameter, shape, alias[, a boolean value]): the SQL compiled from the filter's Q (see
# RecordFilter.sql_shape), and its parameters when they are not the value's.
_compiled: dict[tuple, tuple[str, list | None]] = {}


def condition_sql(q: Q, alias: str) -> tuple[str, list]:
    """The SQL Django writes for `q` on the table aliased `alias`, and its parameters."""
    try:
        return compile_sql(FailedIntegration, q, alias)
    except EmptyResultSet:
        return "FALSE", []
    except FullResultSet:
        return "TRUE", []


def filter_sql(name: str, flt: RecordFilter, value: Any, alias: str) -> tuple[str, list]:
    """A filter's condition as SQL: compiled from its Q once per shape, as its parameters are
    the value itself. A boolean's SQL is the value written in (`fi.is_active`, `NOT ...`), so
    it is compiled once per value."""
    shape = flt.sql_shape(value)
    if shape is NOT_CACHED:
        return condition_sql(flt.q(value), alias)
    key = (name, shape, alias, value) if isinstance(value, bool) else (name, shape, alias)
    compiled = _compiled.get(key)
    if compiled is None:
        sql, params = condition_sql(flt.q(value), alias)
        params = list(params)
        if params == flt.sql_params(value):
            compiled = _compiled[key] = (sql, None)
        elif isinstance(value, bool):
            compiled = _compiled[key] = (sql, params)
        else:
            return sql, params  # neither the value nor one of two: not kept
    sql, params = compiled
    return sql, flt.sql_params(value) if params is None else list(params)


@dataclass(frozen=True)
class ListQuery:
    # (parameter name, filter, value) of each filter the request gave.
    filters: tuple[tuple[str, RecordFilter, Any], ...] = ()
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
            queryset = queryset.filter(flt.q(value))
        return queryset.order_by(*(sort_expression(name) for name in self.sort))

    def where_sql(self, alias: str) -> tuple[list[str], list[Any]]:
        """SQL conditions on the table aliased `alias` (to be AND-ed) and their parameters."""
        conditions: list[str] = []
        parameters: list[Any] = []
        for name, flt, value in self.filters:
            condition, values = filter_sql(name, flt, value, alias)
            conditions.append(condition)
            parameters.extend(values)
        return conditions, parameters

    def order_sql(self, alias: str, *, opaque: bool = False) -> str:
        """ORDER BY keys on the table's columns (qualified by `alias`, so that they never name
        an output column of the same name, which no index could serve). `opaque`: the same
        order on expressions no index serves, so that PostgreSQL reads the rows through the
        filters' indexes and sorts them, rather than walking a sort index."""
        return order_sql(self.sort, alias, opaque=opaque)

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
            columns |= flt.columns
        return frozenset(columns)
