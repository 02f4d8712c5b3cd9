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
def short_time(value) -> str:
    """An answer's date-time (`2025-06-27T08:38:26.936000Z`) to the minute, for tables."""
    if not value:
        return "—"
    return f"{value[:10]} {value[11:16]}"


@register.filter
def percent(part, whole) -> int:
    return round(100 * part / whole) if whole else 0
