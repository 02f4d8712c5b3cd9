"""Hostile input: whatever arrives, the answer is a JSON 4xx (or a success), never a 500; a
date-time is read as RFC 3339 writes it, and nothing else is read as one."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import string

import orjson
import pytest
from hypothesis import HealthCheck, event, example, given, note, settings
from hypothesis import strategies as st

from integrations.models import FailedIntegration
from integrations.reads.filtersets import FailedIntegrationFilterSet

pytestmark = pytest.mark.django_db

UTC = dt.UTC

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "version_date",
        "reason_type",
        "content_type",
        "object_id",
        "channel",
        "is_active",
        "expiration_date",
        "retry_count",
        "max_retry_count",
        "retry_interval",
        "integration_action",
        "log_id",
        "pk",
        "x",
    ]
)
items = st.dictionaries(field_names, json_values, max_size=8) | json_values
nasty_text = st.text(
    alphabet=st.characters(codec="utf-8") | st.sampled_from(["\x00", "'", '"', ";", "-", "%"]),
    max_size=60,
) | st.sampled_from(["1; DROP TABLE x --", "' OR 1=1 --", "2025-01-01T00:00:00+99:99", "9" * 40])
parameters = st.sampled_from(
    [*FailedIntegrationFilterSet.base_filters, "page", "limit", "cursor", "group_by"]
)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def list_path(channel) -> str:
    return f"/api/v1/channel/{channel.pk}/failed_integrations/"


def is_field_errors(body) -> bool:
    """The API's shape of a 400 about fields: each named field with its messages."""
    return (
        isinstance(body, dict)
        and bool(body)
        and all(
            isinstance(messages, list) and messages and all(isinstance(m, str) for m in messages)
            for messages in body.values()
        )
    )


@FAST
@given(item=items)
def test_any_item_answers_the_record_or_a_400_with_messages_by_field(
    api_client, channel, product_type, item
):
    response = api_client.post(list_path(channel), item, format="json")

    assert response.status_code in (201, 400), (item, response.content)
    if response.status_code == 400:
        body = response.json()
        assert is_field_errors(body) or set(body) == {"detail", "code"}, response.content


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(params=st.dictionaries(parameters, nasty_text, max_size=3))
def test_any_list_query_answers_json_below_500_and_a_400_names_only_given_parameters(
    api_client, channel, params
):
    for path in ("", "stats/"):
        response = api_client.get(f"{list_path(channel)}{path}", params)
        assert response.status_code < 500, (params, response.content)
        body = orjson.loads(response.content)
        if response.status_code == 400:
            assert is_field_errors(body), response.content
            assert set(body) <= set(params), (params, body)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_body_answers_json_below_500(api_client, channel, body):
    for path in ("", "bulk/", "retry/"):
        response = api_client.generic(
            "POST", f"{list_path(channel)}{path}", body, content_type="application/json"
        )
        assert response.status_code < 500, (body, response.content)
        orjson.loads(response.content)


@pytest.mark.parametrize(
    "params",
    [
        {"content_type": "products\x00.product"},
        {"reason_type": "remote\x00"},
        {"object_id": "1; DROP TABLE integrations_failedintegration"},
        {"sort": "-" * 5000},
        {"version_date__gte": "2" * 10000},
        {"limit": "0"},
        {"limit": "-1"},
        {"page": "9" * 99},
        {"cursor": "\x00"},
        {"group_by": "reason_type\x00"},
        {"state__in": ",".join(["due"] * 1000)},
    ],
)
def test_edge_parameters_answer_json_below_500(api_client, channel, params):
    for path in ("", "stats/"):
        response = api_client.get(f"{list_path(channel)}{path}", params)
        assert response.status_code < 500
        assert response["Content-Type"] == "application/json"


def test_printable_junk_in_the_authorization_header_answers_401(anonymous_client, channel):
    for junk in ["Token \x00", "Token " + string.printable, "Token " + "é" * 50, "\x00" * 10]:
        response = anonymous_client.get(list_path(channel), HTTP_AUTHORIZATION=junk)
        assert response.status_code == 401


# --- date-times --------------------------------------------------------------------------------
#
# A date-time in a body or a query string is RFC 3339's `date-time` (the offset may be left
# out, meaning UTC): it is stored and answered as the instant it names, in UTC, written
# `YYYY-MM-DDTHH:MM:SS.ffffffZ` (digits beyond the microsecond are dropped). Anything else
# answers 400 naming the field or parameter.

DATE_FIELDS = st.sampled_from(["version_date", "expiration_date"])
DATETIMES = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
object_ids = itertools.count(1)
FRACTION_SIZES = ["no", *["1-5"] * 5, "6", *["7-9"] * 3]


def utc_text(instant: dt.datetime) -> str:
    return instant.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


@st.composite
def offsets(draw) -> tuple[str, dt.timedelta]:
    """An offset as written, and its value."""
    kind = draw(st.sampled_from(["Z", "z", "none", "+", "-"]))
    if kind in ("Z", "z"):
        return kind, dt.timedelta(0)
    if kind == "none":
        return "", dt.timedelta(0)
    hours, minutes = draw(st.integers(0, 23)), draw(st.integers(0, 59))
    value = dt.timedelta(hours=hours, minutes=minutes)
    return f"{kind}{hours:02d}:{minutes:02d}", -value if kind == "-" else value


@st.composite
def rfc3339_date_times(draw) -> tuple[str, dt.datetime | None]:
    """An RFC 3339 date-time, and the instant it names (None when that instant falls outside
    years 1 to 9999 once in UTC)."""
    local = draw(st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime.max))
    digits = draw(st.integers(0, 9))
    # The fraction as written: the microseconds cut to `digits`, or padded with extra digits
    # (which name less than a microsecond and are dropped).
    local = local.replace(microsecond=int(f"{local.microsecond:06d}"[:digits].ljust(6, "0")))
    extra = draw(st.text("0123456789", min_size=max(digits - 6, 0), max_size=max(digits - 6, 0)))
    fraction = (f"{local.microsecond:06d}" + extra)[:digits]
    separator = draw(st.sampled_from("Tt"))
    offset_text, offset = draw(offsets())
    text = (
        f"{local.year:04d}-{local.month:02d}-{local.day:02d}{separator}"
        f"{local.hour:02d}:{local.minute:02d}:{local.second:02d}"
        f"{'.' + fraction if digits else ''}{offset_text}"
    )
    event(f"offset {offset_text[:1] or 'left out'}")
    event(f"fraction of {FRACTION_SIZES[digits]} digits")
    try:
        instant = local.replace(tzinfo=dt.timezone(offset)).astimezone(UTC)
    except OverflowError:
        instant = None
    return text, instant


@DATETIMES
@given(case=rfc3339_date_times(), field=DATE_FIELDS)
@example(case=("0001-01-01T00:00:00+00:01", None), field="version_date")
@example(case=("9999-12-31T23:59:59.999999-00:01", None), field="expiration_date")
@example(
    case=("0001-01-01T00:00:00-23:59", dt.datetime(1, 1, 1, 23, 59, tzinfo=UTC)),
    field="version_date",
)
@example(
    case=("2025-06-27t08:38:26.9369999z", dt.datetime(2025, 6, 27, 8, 38, 26, 936999, tzinfo=UTC)),
    field="expiration_date",
)
def test_a_valid_date_time_is_stored_and_answered_as_the_same_instant_in_utc(
    api_client, channel, product_type, case, field
):
    text, instant = case
    note(f"{field}={text!r}")
    payload = {
        "version_date": "2025-06-27T08:38:26Z",
        "reason_type": "remote",
        "content_type": product_type.pk,
        "object_id": next(object_ids),
        field: text,
    }

    response = api_client.post(list_path(channel), payload, format="json")

    if instant is None:
        event("asserted: beyond years 1-9999 in UTC, 400")
        assert response.status_code == 400, response.content
        assert list(response.json()) == [field]
        return
    event("asserted: stored and answered")
    assert response.status_code == 201, response.content
    pk = response.json()["pk"]
    assert response.json()[field] == utc_text(instant)
    assert getattr(FailedIntegration.objects.get(pk=pk), field) == instant
    # The same text in a query string names the same instant.
    for lookups, count in ((("",), 1), (("__gte", "__lte"), 1), (("__gt",), 0), (("__lt",), 0)):
        params = {"pk__in": pk, **{f"{field}{lookup}": text for lookup in lookups}}
        listed = api_client.get(list_path(channel), params)
        assert (listed.status_code, listed.json()["count"]) == (200, count), listed.content
        if count:
            assert listed.json()["results"][0][field] == utc_text(instant)


def non_ascii_digits() -> st.SearchStrategy[str]:
    return st.characters(categories=["Nd"], min_codepoint=128)


NEAR_MISSES = [
    "date only",
    "no seconds",
    "no separator",
    "other separator",
    "short field",
    "long year",
    "short year",
    "month out of range",
    "day out of range",
    "hour out of range",
    "minute out of range",
    "second out of range",
    "offset hours out of range",
    "offset minutes out of range",
    "offset without colon",
    "offset hours only",
    "empty fraction",
    "comma fraction",
    "non-ASCII digit",
    "non-ASCII punctuation",
    "trailing junk",
    "leading junk",
]


@st.composite
def near_misses(draw, kind: str) -> str:
    """A valid date-time with one thing wrong (`kind`) that no RFC 3339 reader accepts."""
    year, month, day = (
        draw(st.integers(1, 9999)),
        draw(st.integers(1, 12)),
        draw(st.integers(1, 28)),
    )
    hour, minute, second = (
        draw(st.integers(0, 23)),
        draw(st.integers(0, 59)),
        draw(st.integers(0, 59)),
    )
    fraction = draw(st.sampled_from(["", ".5", ".936", ".123456", ".1234567"]))
    offset = draw(st.sampled_from(["Z", "z", "", "+03:00", "-05:30", "+00:00"]))
    date = f"{year:04d}-{month:02d}-{day:02d}"
    time = f"{hour:02d}:{minute:02d}:{second:02d}"
    if kind == "date only":
        text = date + draw(st.sampled_from(["", "Z", "T"]))
    elif kind == "no seconds":
        text = f"{date}T{hour:02d}:{minute:02d}{offset}"
    elif kind == "no separator":
        text = f"{date}{time}{fraction}{offset}"
    elif kind == "other separator":
        text = f"{date}{draw(st.sampled_from('_/xX-:'))}{time}{fraction}{offset}"
    elif kind == "short field":
        parts = [f"{year:04d}", f"{month:02d}", f"{day:02d}", f"{hour:02d}", f"{minute:02d}"]
        parts.append(f"{second:02d}")
        index = draw(st.integers(0, 5))
        parts[index] = parts[index][1:]
        text = f"{parts[0]}-{parts[1]}-{parts[2]}T{parts[3]}:{parts[4]}:{parts[5]}{offset}"
    elif kind == "long year":
        text = f"{draw(st.integers(10000, 99999))}-{month:02d}-{day:02d}T{time}{offset}"
    elif kind == "short year":
        text = f"{year % 100:02d}-{month:02d}-{day:02d}T{time}{offset}"
    elif kind == "month out of range":
        bad = draw(st.sampled_from([0, *range(13, 100)]))
        text = f"{year:04d}-{bad:02d}-{day:02d}T{time}{fraction}{offset}"
    elif kind == "day out of range":
        last = [31, 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28]
        last += [31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        bad = draw(st.sampled_from([0, *range(last[month - 1] + 1, 100)]))
        text = f"{year:04d}-{month:02d}-{bad:02d}T{time}{fraction}{offset}"
    elif kind == "hour out of range":
        text = f"{date}T{draw(st.integers(24, 99))}:{minute:02d}:{second:02d}{offset}"
    elif kind == "minute out of range":
        text = f"{date}T{hour:02d}:{draw(st.integers(60, 99))}:{second:02d}{offset}"
    elif kind == "second out of range":  # 60, a leap second, is RFC 3339's; 61 and over are not
        text = f"{date}T{hour:02d}:{minute:02d}:{draw(st.integers(61, 99))}{offset}"
    elif kind == "offset hours out of range":
        sign = draw(st.sampled_from("+-"))
        text = f"{date}T{time}{sign}{draw(st.integers(24, 99))}:{minute:02d}"
    elif kind == "offset minutes out of range":
        sign = draw(st.sampled_from("+-"))
        text = f"{date}T{time}{sign}{hour:02d}:{draw(st.integers(60, 99))}"
    elif kind == "offset without colon":
        text = f"{date}T{time}{draw(st.sampled_from('+-'))}{hour:02d}{minute:02d}"
    elif kind == "offset hours only":
        text = f"{date}T{time}{draw(st.sampled_from('+-'))}{hour:02d}"
    elif kind == "empty fraction":
        text = f"{date}T{time}.{offset}"
    elif kind == "comma fraction":
        text = f"{date}T{time},{draw(st.integers(0, 999999))}{offset}"
    elif kind == "non-ASCII digit":
        text = f"{date}T{time}{fraction}{offset}"
        positions = [i for i, c in enumerate(text) if c in string.digits]
        index = draw(st.sampled_from(positions))
        text = text[:index] + draw(non_ascii_digits()) + text[index + 1 :]
    elif kind == "non-ASCII punctuation":
        text = f"{date}T{time}{fraction}{offset}"
        ascii_char, lookalike = draw(
            st.sampled_from([("-", "\u2010"), ("-", "\u2212"), (":", "\uff1a"), ("T", "\uff34")])
        )
        index = draw(st.sampled_from([i for i, c in enumerate(text) if c == ascii_char]))
        text = text[:index] + lookalike + text[index + 1 :]
    elif kind == "trailing junk":
        junk = "x#;.-/" + ("Z" if offset else "")  # a `Z` after no offset is the offset
        text = f"{date}T{time}{fraction}{offset}{draw(st.sampled_from(junk))}"
    else:
        text = f"{draw(st.sampled_from('x#;-+T'))}{date}T{time}{fraction}{offset}"
    return text


@pytest.mark.parametrize("kind", NEAR_MISSES)
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), field=DATE_FIELDS)
def test_a_near_miss_of_a_date_time_answers_400_naming_the_field(
    api_client, channel, product_type, kind, data, field
):
    text = data.draw(near_misses(kind), label="text")
    event(f"asserted: {kind}")
    note(f"{field}={text!r}")
    payload = {
        "version_date": "2025-06-27T08:38:26Z",
        "reason_type": "remote",
        "content_type": product_type.pk,
        "object_id": 1,
        field: text,
    }

    created = api_client.post(list_path(channel), payload, format="json")
    listed = api_client.get(list_path(channel), {f"{field}__gte": text})

    assert (created.status_code, list(created.json())) == (400, [field]), created.content
    assert (listed.status_code, list(listed.json())) == (400, [f"{field}__gte"]), listed.content
    assert not FailedIntegration.objects.exists()


ARABIC_INDIC_2025 = "".join(
    chr(0x0660 + int(c)) if c.isdigit() else c for c in "2025-01-01T00:00:00Z"
)


@pytest.mark.parametrize(
    "text",
    [
        ARABIC_INDIC_2025,  # 2025-01-01T00:00:00Z in Arabic-Indic digits
        "\uff12\uff10\uff12\uff15-01-01T00:00:00Z",  # full-width year
        "2025-01-0\u0661T00:00:00Z",  # one Arabic-Indic digit
        "2025-01-01T00:00:00.\u0665Z",  # in the fraction
        "2025-01-01T00:00:00+\u0660\u0663:00",  # in the offset
        "2025-01-01T00:00:00 \u0660\u0663:00",  # in an offset whose `+` a query string made a space
    ],
)
def test_a_date_time_with_digits_other_than_ascii_answers_400(
    api_client, channel, product_type, make_failed, text
):
    make_failed(version_date=dt.datetime(2025, 6, 1, tzinfo=UTC))
    payload = {"reason_type": "remote", "content_type": product_type.pk, "object_id": 2}

    created = api_client.post(list_path(channel), {**payload, "version_date": text}, format="json")
    expiring = api_client.post(
        list_path(channel),
        {**payload, "version_date": "2025-01-01T00:00:00Z", "expiration_date": text},
        format="json",
    )
    listed = api_client.get(list_path(channel), {"version_date__gte": text})

    assert (created.status_code, list(created.json())) == (400, ["version_date"])
    assert (expiring.status_code, list(expiring.json())) == (400, ["expiration_date"])
    assert (listed.status_code, list(listed.json())) == (400, ["version_date__gte"])
    assert FailedIntegration.objects.count() == 1


def test_a_date_time_followed_by_a_newline_in_a_body_answers_400(api_client, channel, product_type):
    payload = {"reason_type": "remote", "content_type": product_type.pk, "object_id": 1}

    response = api_client.post(
        list_path(channel), {**payload, "version_date": "2025-01-01T00:00:00Z\n"}, format="json"
    )

    assert (response.status_code, list(response.json())) == (400, ["version_date"])
