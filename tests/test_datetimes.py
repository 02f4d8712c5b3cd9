"""Date-times as every answer writes them: UTC, a `Z`, four-digit years and microseconds."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from common.fields import format_datetime_utc, parse_datetime_utc

offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)


def written(value: dt.datetime) -> str:
    """The format spelled out field by field."""
    value = value.astimezone(dt.UTC) if value.utcoffset() is not None else value
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}Z"
    )


@given(
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)),
    st.none() | offsets,
)
def test_a_date_time_is_written_in_utc_with_microseconds_and_read_back(value, offset):
    value = value.replace(tzinfo=offset)  # naive (taken as UTC) or at an offset

    text = format_datetime_utc(value)

    assert text == written(value)
    assert parse_datetime_utc(text) == (value if offset else value.replace(tzinfo=dt.UTC))


def test_none_is_written_as_none():
    assert format_datetime_utc(None) is None


def test_a_whole_second_and_an_early_year_keep_their_digits():
    assert format_datetime_utc(dt.datetime(7, 3, 4, 5, 6, 7, tzinfo=dt.UTC)) == (
        "0007-03-04T05:06:07.000000Z"
    )
