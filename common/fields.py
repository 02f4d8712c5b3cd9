"""Serializer fields that take JSON types as the contract states them.

DRF's own fields coerce ("5" becomes 5, "yes" becomes True, 1.0 becomes 1). A typed contract
is easier to trust when a wrong type is answered with a 400 naming the field, so these accept
only the JSON type itself.
"""

from __future__ import annotations

import datetime as dt
import re

from django.utils import timezone
from rest_framework import serializers
from rest_framework.relations import PrimaryKeyRelatedField

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

UTC = dt.UTC


class StrictIntegerField(serializers.IntegerField):
    default_error_messages = {
        "invalid": "A valid integer is required.",
    }

    def __init__(self, **kwargs):
        kwargs.setdefault("max_value", INT64_MAX)
        kwargs.setdefault("min_value", -INT64_MAX - 1)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, float):
            # orjson reads integers beyond 64 bits as floats: answer them as out of range.
            if data.is_integer() and not (self.min_value <= data <= self.max_value):
                self.fail(
                    "max_value" if data > 0 else "min_value",
                    max_value=self.max_value,
                    min_value=self.min_value,
                )
            self.fail("invalid")
        if not isinstance(data, int):
            self.fail("invalid")
        if data > self.max_value:
            self.fail("max_value", max_value=self.max_value)
        if data < self.min_value:
            self.fail("min_value", min_value=self.min_value)
        return data

    def to_representation(self, value):
        return value


class StrictBooleanField(serializers.BooleanField):
    default_error_messages = {"invalid": "Must be a boolean (true or false)."}

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        self.fail("invalid")

    def to_representation(self, value):
        return value


class StrictChoiceField(serializers.ChoiceField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


class StrictPrimaryKeyRelatedField(PrimaryKeyRelatedField):
    """A foreign key given as its integer id; anything else is a type error, not a lookup."""

    default_error_messages = {
        "incorrect_type": "Incorrect type. Expected pk value (an integer), received {data_type}.",
    }

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("incorrect_type", data_type=type(data).__name__)
        if not (-INT64_MAX - 1 <= data <= INT64_MAX):
            self.fail("does_not_exist", pk_value=data)
        return super().to_internal_value(data)


# RFC 3339 date-time; the offset may be left out (then the time is taken as UTC).
_DATETIME_RE = re.compile(
    r"^(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})[Tt]"
    r"(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})(?:\.(?P<fraction>\d+))?"
    r"(?P<offset>[Zz]|[+-]\d{2}:\d{2})?$"
)


def parse_datetime_utc(value: str) -> dt.datetime:
    """Parses an RFC 3339 date-time into an aware UTC datetime; ValueError if it cannot."""
    match = _DATETIME_RE.match(value)
    if match is None:
        raise ValueError("format")
    parts = match.groupdict()
    fraction = (parts["fraction"] or "0")[:6].ljust(6, "0")
    offset = parts["offset"]
    if offset is None or offset in "Zz":
        tzinfo = UTC
    else:
        sign = -1 if offset[0] == "-" else 1
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 23 or minutes > 59:
            raise ValueError("offset")
        tzinfo = dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))
    local = dt.datetime(
        int(parts["year"]),
        int(parts["month"]),
        int(parts["day"]),
        int(parts["hour"]),
        int(parts["minute"]),
        int(parts["second"]),
        int(fraction),
        tzinfo=tzinfo,
    )
    return local.astimezone(UTC)


def format_datetime_utc(value: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z` suffix and microseconds, as every answer carries them."""
    if value is None:
        return None
    value = value.replace(tzinfo=UTC) if timezone.is_naive(value) else value.astimezone(UTC)
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}Z"
    )


class UTCDateTimeField(serializers.DateTimeField):
    default_error_messages = {
        "invalid": (
            "Datetime has wrong format. Use RFC 3339, e.g. 2025-06-27T08:38:26.936Z "
            "(an offset is converted to UTC; no offset means UTC)."
        ),
        "overflow": "Datetime value out of range (years 0001 to 9999 in UTC).",
    }

    def to_internal_value(self, value):
        if not isinstance(value, str):
            self.fail("invalid")
        try:
            return parse_datetime_utc(value)
        except OverflowError:
            self.fail("overflow")
        except ValueError:
            self.fail("invalid")

    def to_representation(self, value):
        return format_datetime_utc(value)
