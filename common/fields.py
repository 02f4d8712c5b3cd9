"""Bounds of the storage's integers, and date-times as the API reads and writes them."""

from __future__ import annotations

import datetime as dt
import re

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

UTC = dt.UTC


# RFC 3339 date-time; the offset may be left out (then the time is taken as UTC).
_DATETIME_RE = re.compile(
    r"^(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})[Tt]"
    r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]+))?"
    r"(?P<offset>[Zz]|[+-][0-9]{2}:[0-9]{2})?\Z"
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
    if value.utcoffset() is None:
        value = value.replace(tzinfo=UTC)
    elif value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # Years are written with four digits, microseconds always; "+00:00" becomes "Z".
    return value.isoformat(timespec="microseconds")[:-6] + "Z"
