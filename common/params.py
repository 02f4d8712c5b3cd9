"""Query parameters: a bad value answers 400 naming the parameter."""

from __future__ import annotations

import re

from rest_framework.exceptions import ValidationError

_INTEGER_RE = re.compile(r"-?[0-9]+")  # ASCII digits only, the whole value (fullmatch)
MAX_PARAM_LENGTH = 100


def int_param(query_params, name: str, *, minimum: int | None = None) -> int | None:
    """The integer value of parameter `name`, or None when it is absent or empty."""
    raw = query_params.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > MAX_PARAM_LENGTH:
        raise ValidationError(
            {name: [f"Ensure this value has at most {MAX_PARAM_LENGTH} characters."]}
        )
    if not _INTEGER_RE.fullmatch(raw):
        raise ValidationError({name: ["A valid integer is required."]})
    value = int(raw)
    if minimum is not None and value < minimum:
        raise ValidationError({name: [f"Ensure this value is greater than or equal to {minimum}."]})
    return value


def str_param(query_params, name: str, *, max_length: int = MAX_PARAM_LENGTH) -> str | None:
    """The text of parameter `name`, or None when absent or empty."""
    raw = query_params.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > max_length:
        raise ValidationError({name: [f"Ensure this value has at most {max_length} characters."]})
    if "\x00" in raw:
        raise ValidationError({name: ["Null characters are not allowed."]})
    return raw
