from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def get(mapping, key):
    """`mapping|get:key`: a dict's value by a key held in a variable."""
    try:
        return mapping.get(key)
    except AttributeError:
        return None


@register.filter
def has_value(params, pair: str) -> bool:
    """`params|has_value:"name=value"`: whether the query string gives `name` that value
    (one of its comma-separated values)."""
    name, _, value = pair.partition("=")
    given = ",".join(params.getlist(name)) if params is not None else ""
    return value in given.split(",")


@register.filter
def percent(part, whole) -> int:
    return round(100 * part / whole) if whole else 0
