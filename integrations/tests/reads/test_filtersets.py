"""Every query parameter of the list, through the API: the records it answers are the ones an
oracle written here in Python picks from the stored records, on a set of records whose values
vary (nulls, ties, the storage's bounds, both sides of each boundary). On PostgreSQL each answer
is also the same, whole body, through the fast path (a token) and through the regular view."""

from __future__ import annotations

import datetime as dt
import functools
import operator
from urllib.parse import quote

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, event, given, note, settings, target
from hypothesis import strategies as st
from rest_framework.test import APIClient

from integrations.models import FailedIntegration, IntegrationAction
from integrations.reads.filtersets import FailedIntegrationFilterSet
from integrations.records import registry

pytestmark = pytest.mark.django_db

UTC = dt.UTC
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def at(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def on_postgresql() -> bool:
    return connection.vendor == "postgresql"


def list_path(channel) -> str:
    return f"/api/v1/channel/{channel.pk}/failed_integrations/"


@pytest.fixture
def regular_client(staff_user) -> APIClient:
    """A client the regular views answer: the fast path serves requests with a token only."""
    client = APIClient()
    client.force_authenticate(user=staff_user)
    return client


def answer(api_client, regular_client, channel, params: dict | None = None, *, query=None):
    """The list's answer to `params` (or to the raw query string `query`), all on one page. On
    PostgreSQL, the fast path's answer and the regular view's must be the same."""
    path = list_path(channel)
    if query is not None:
        url, data = f"{path}?{query}&limit=1000", None
    else:
        url, data = path, {"limit": 1000, **(params or {})}
    response = api_client.get(url, data)
    if on_postgresql():
        regular = regular_client.get(url, data)
        assert (response.status_code, response.json()) == (regular.status_code, regular.json())
    return response


# --- the records ---------------------------------------------------------------------------
#
# Times far from the present (2020 and before, 2990 and after) are in the past or the future
# whenever the suite runs; `state` is what the engine's life cycle says of each.

PAST, FUTURE = "2020-01-01T00:00:00", "2999-01-01T00:00:00"
DEFAULTS = {
    "reason_type": "remote",
    "is_active": True,
    "ct": "products.product",
    "object_id": 1,
    "action": None,
    "log_id": None,
    "version_date": "2025-01-01T00:00:00",
    "expiration_date": None,
    "retry_count": 1,
    "max_retry_count": 3,
    "retry_interval": 60,
    "created_date": "2025-02-01T00:00:00",
    "modified_date": "2025-03-01T00:00:00",
    "parked": False,
    "resolution": "",
    "resolved_at": None,
    "next_retry_at": None,
    "last_attempt_at": None,
    "lease_expires_at": None,
}
# Writable fields the rows do not name (fields added since they were written): an integer
# holds the row's number, so that its cases reach both sides of each filter; another field, the
# model's default.
UNNAMED = tuple(
    field
    for field in registry.WRITABLE
    if field.name not in DEFAULTS and field.model_field.has_default()
)
ROWS: dict[str, dict] = {
    "r0": dict(
        reason_type="mapping",
        object_id=0,
        action="a1",
        log_id=0,
        retry_count=0,
        max_retry_count=0,
        retry_interval=0,
        state="exhausted",
    ),
    "r1": dict(
        log_id=10,
        version_date="2025-01-01T00:00:00.000001",
        expiration_date=PAST,
        created_date="2025-02-01T00:00:00.500000",
        next_retry_at="2020-06-01T00:00:00",
        last_attempt_at="2020-05-31T23:59:59.999999",
        state="expired",
    ),
    "r2": dict(
        is_active=False,
        resolution="resolved",
        ct="orders.order",
        object_id=2,
        version_date="2025-01-02T00:00:00",
        expiration_date=FUTURE,
        retry_count=2,
        max_retry_count=5,
        retry_interval=300,
        created_date="2025-02-03T00:00:00",
        modified_date="2025-03-03T00:00:00",
        resolved_at="2025-05-01T00:00:00",
        last_attempt_at="2025-04-30T23:00:00",
        state="resolved",
    ),
    "r3": dict(
        reason_type="channel_app",
        parked=True,
        ct="orders.order",
        version_date="2025-01-04T00:00:00",
        expiration_date="2021-01-01T00:00:00",
        retry_count=5,
        max_retry_count=3,
        retry_interval=3600,
        created_date="2025-02-04T00:00:00",
        modified_date="2025-03-04T00:00:00",
        state="expired",
    ),
    "r4": dict(
        object_id=INT64_MAX,
        log_id=INT64_MAX,
        version_date="0001-01-01T00:00:00",
        retry_count=INT32_MAX,
        max_retry_count=INT32_MAX,
        retry_interval=INT32_MAX,
        created_date="2025-02-04T00:00:00",
        next_retry_at=PAST,
        retry_by_hand=True,
        state="due",  # exhausted, and retried by hand: due
    ),
    "r5": dict(
        reason_type="mapping",
        ct="prices.productprice",
        object_id=5,
        action="a2",
        version_date="9999-12-31T23:59:59.999999",
        expiration_date="9999-12-31T23:59:59.999999",
        retry_count=0,
        max_retry_count=2,
        modified_date="2025-03-01T00:00:00.000001",
        next_retry_at=PAST,
        lease_expires_at=FUTURE,
        state="in_progress",
    ),
    "r6": dict(
        reason_type="channel_app",
        is_active=False,
        resolution="superseded",
        version_date="2024-12-31T23:00:00",
        expiration_date=PAST,
        resolved_at="2025-05-01T00:00:00.000001",
        created_date="2025-01-31T23:59:59.999999",
        state="superseded",
    ),
    "r7": dict(
        is_active=False,
        resolution="expired",
        ct="orders.order",
        object_id=7,
        version_date="2025-01-02T00:00:00",
        expiration_date=PAST,
        resolved_at=PAST,
        modified_date="2025-03-03T00:00:00",
        state="expired",
    ),
    "r8": dict(
        object_id=8,
        action="a2",
        log_id=20,
        retry_count=1,
        max_retry_count=2,
        next_retry_at=FUTURE,
        last_attempt_at="2025-03-10T12:00:00",
        created_date="2025-02-05T00:00:00",
        state="pending",
    ),
    "r9": dict(
        reason_type="channel_app",
        parked=True,
        object_id=9,
        retry_count=3,
        max_retry_count=3,
        next_retry_at=PAST,
        modified_date="2025-03-05T00:00:00",
        state="parked",
    ),
    "r10": dict(
        reason_type="mapping",
        retry_count=0,
        max_retry_count=1,
        retry_interval=1,
        lease_expires_at=PAST,
        created_date="2025-02-04T00:00:00",
        last_attempt_at="2025-03-10T12:00:00",
        state="pending",  # its lease lapsed long ago
    ),
    "r11": dict(
        is_active=False,
        parked=True,
        ct="orders.order",
        object_id=11,
        log_id=10,
        expiration_date=FUTURE,
        state="resolved",  # inactive without a resolution
    ),
    "r12": dict(
        object_id=12,
        expiration_date=FUTURE,
        next_retry_at="2025-06-01T00:00:00",
        last_attempt_at="2025-05-31T23:59:59",
        state="due",
    ),
}
DATETIME_FIELDS = (
    "version_date",
    "expiration_date",
    "created_date",
    "modified_date",
    "next_retry_at",
    "last_attempt_at",
    "resolved_at",
)
CONTENT_TYPES = (
    "products.product",
    "orders.order",
    "prices.productprice",
    "categories.categorynode",
)
STATES = (
    "pending",
    "due",
    "in_progress",
    "resolved",
    "exhausted",
    "parked",
    "expired",
    "superseded",
)


def row(name: str) -> dict:
    values = {**DEFAULTS, **ROWS[name]}
    for field in UNNAMED:
        default = list(ROWS).index(name) if field.kind == registry.INT else None
        values.setdefault(
            field.name, field.model_field.get_default() if default is None else default
        )
    for field in (*DATETIME_FIELDS, "lease_expires_at"):
        if values[field] is not None:
            values[field] = at(values[field])
    return values


@pytest.fixture
def varied(channel, other_channel, product_type):
    """The records of ROWS in `channel` (which has a retry endpoint), and in another channel
    copies of some that no list of `channel` may answer. Answers the names the cases use."""
    channel.retry_endpoint = "http://127.0.0.1:9/retry"
    channel.save()
    refs: dict[str, int] = {"channel": channel.pk, "other_channel": other_channel.pk}
    for name in CONTENT_TYPES:
        app_label, model = name.split(".")
        refs[name] = ContentType.objects.get_or_create(app_label=app_label, model=model)[0].pk
        refs[f"ct_{model}"] = refs[name]  # for the values (`{...}` cannot hold a dot)
    for action in ("a1", "a2"):
        refs[action] = IntegrationAction.objects.create(
            channel=channel, content_type=product_type, object_id=100 + len(refs)
        ).pk
    for name in ROWS:
        values = row(name)
        values.pop("state")
        created, modified = values.pop("created_date"), values.pop("modified_date")
        record = FailedIntegration.objects.create(
            channel=channel,
            content_type_id=refs[values.pop("ct")],
            integration_action_id=refs.get(values.pop("action")),
            **values,
        )
        # Set afterwards: the model sets them when a record is saved.
        FailedIntegration.objects.filter(pk=record.pk).update(
            created_date=created, modified_date=modified
        )
        refs[name] = record.pk
    for name in ("r0", "r4", "r8"):
        values = row(name)
        for key in ("state", "ct", "action"):
            values.pop(key)
        refs[f"other_{name}"] = FailedIntegration.objects.create(
            channel=other_channel, content_type_id=refs["products.product"], **values
        ).pk
    refs["missing"] = 10**12
    return refs


# --- the oracle ------------------------------------------------------------------------------

LOOKUPS = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}
BOOLEANS = {"true": True, "1": True, "false": False, "0": False}
ATTRIBUTES = {
    "pk": "pk",
    "channel": "channel_id",
    "content_type": "content_type_id",
    "integration_action": "integration_action_id",
}


def stored(channel) -> list[FailedIntegration]:
    """The channel's records as stored, read back."""
    return list(FailedIntegration.objects.filter(channel=channel).order_by("pk"))


def split(param: str) -> tuple[str, str]:
    """`version_date__gte` -> ("version_date", "gte"); `reason_type` -> ("reason_type", "exact")."""
    name, _, lookup = param.rpartition("__")
    if lookup in (*LOOKUPS, "in", "isnull"):
        return name, lookup
    return param, "exact"


def parse_one(name: str, text: str, refs: dict):
    text = text.strip()
    if name in DATETIME_FIELDS:
        return at(text.replace("z", "Z"))
    if name in ("content_type",):
        return refs[text] if "." in text else int(text)
    if name in ("reason_type", "state"):
        return text
    if name in ("is_active", "parked", "exhausted", "expired"):
        return BOOLEANS[text.lower()]
    return int(text)


def value_of(record: FailedIntegration, name: str, states: dict[int, str]):
    if name == "state":
        return states[record.pk]
    if name == "exhausted":
        return record.retry_count >= record.max_retry_count
    if name == "expired":
        return record.expiration_date is not None and record.expiration_date < timezone.now()
    return getattr(record, ATTRIBUTES.get(name, name))


def matches(record: FailedIntegration, param: str, text: str, refs: dict, states) -> bool:
    """Whether `param=text` picks `record`, by the API's documented meaning of the parameter."""
    if text == "":
        return True  # an empty value is no filter
    name, lookup = split(param)
    actual = value_of(record, name, states)
    if lookup == "isnull":
        return (actual is None) == BOOLEANS[text.strip().lower()]
    if lookup == "in":
        return actual in {parse_one(name, item, refs) for item in text.split(",")}
    wanted = parse_one(name, text, refs)
    if actual is None:
        return False  # an empty value compares with nothing
    if lookup == "exact":
        return actual == wanted
    return LOOKUPS[lookup](actual, wanted)


def expected(records: list[FailedIntegration], refs, params: dict[str, str]) -> list[int]:
    """The pks of the records `params` pick, in pk order (parameters other than filters, such
    as `sort` or `limit`, pick nothing)."""
    states = {refs[name]: ROWS[name]["state"] for name in ROWS}
    filters = {param: text for param, text in params.items() if param in VALUES}
    return [
        record.pk
        for record in records
        if all(matches(record, param, text, refs, states) for param, text in filters.items())
    ]


# --- the values each parameter is tried with ------------------------------------------------

# Counted per hour on PostgreSQL: the last hour of year 9999 has no hour after it (see
# test_a_range_filter_at_the_end_of_year_9999_answers_the_records_before_it).
COUNTED_BY_HOUR = ("version_date", "expiration_date", "created_date", "modified_date")


def datetime_values(field: str, lookup: str) -> list[str]:
    """A stored value of `field` and a microsecond either side of it, the same instant in other
    offsets, its least and greatest stored values, and the ends of the range."""
    values = sorted({row(name)[field] for name in ROWS} - {None})
    middle = values[len(values) // 2]
    texts = [utc(middle + dt.timedelta(microseconds=delta)) for delta in (-1, 0, 1)]
    texts += [
        middle.astimezone(dt.timezone(dt.timedelta(hours=3))).isoformat(),
        middle.astimezone(dt.timezone(-dt.timedelta(hours=5, minutes=30))).isoformat(),
        utc(values[0]),
        utc(values[-1]),
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
        "",
    ]
    if lookup == "":
        texts += [utc(middle).replace("T", "t").replace("Z", "z"), utc(middle)[:-1]]
    return list(dict.fromkeys(texts))


def utc(value: dt.datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def integer_values(field: str, maximum: int) -> list[str]:
    """A stored value of `field` and either side of it, its least and greatest stored values,
    and the ends of the range."""
    values = sorted({row(name)[field] for name in ROWS} - {None})
    middle = values[len(values) // 2]
    numbers = [middle - 1, middle, middle + 1, values[0], values[-1], 0, maximum]
    return [str(n) for n in dict.fromkeys(numbers) if 0 <= n <= maximum] + [""]


BOOLEAN_VALUES = ["true", "false", "1", "0", "TRUE", "False", ""]
VALUES: dict[str, list[str]] = {
    "pk__in": [
        "{r0},{r3}",
        "{r1}",
        "{r1},{r1}",
        "{other_r0}",
        "{r2},{other_r4},{missing}",
        str(INT64_MAX),
        "",
    ],
    "channel": ["{channel}", "{other_channel}", "-1", "0", "9" * 30, ""],
    "reason_type": ["mapping", "remote", "channel_app", ""],
    "reason_type__in": [
        "mapping,channel_app",
        "remote",
        "remote,remote",
        "remote,mapping,channel_app",
    ],
    "is_active": BOOLEAN_VALUES,
    "content_type": [
        "{ct_product}",
        "orders.order",
        "prices.productprice",
        "categories.categorynode",
        "",
    ],
    "content_type__in": [
        "products.product,{ct_order}",
        "{ct_productprice}",
        "categories.categorynode,orders.order",
        "orders.order,orders.order",
    ],
    "object_id": ["0", "1", "2", "7", str(INT64_MAX), str(INT64_MAX - 1), "123456", ""],
    "object_id__in": ["0,1", "2,7,11", str(INT64_MAX), "3,4,6", "12,12", ""],
    "integration_action": ["{a1}", "{a2}", str(INT64_MAX), ""],
    "integration_action__isnull": ["true", "false", "1", "0", ""],
    "log_id": ["0", "10", "20", str(INT64_MAX), "11", ""],
    "log_id__isnull": ["true", "false", ""],
    "expiration_date__isnull": ["true", "false", ""],
    "exhausted": BOOLEAN_VALUES,
    "parked": BOOLEAN_VALUES,
    "expired": BOOLEAN_VALUES,
    "state": [*STATES, ""],
    "state__in": [
        ",".join(STATES),
        "due,in_progress",
        "pending,pending",
        "resolved,superseded,expired",
        "exhausted,parked",
        "",
    ],
    "next_retry_at__isnull": ["true", "false", ""],
    "last_attempt_at__isnull": ["true", "false", ""],
    "resolved_at__isnull": ["true", "false", ""],
}
for _field in DATETIME_FIELDS:
    for _lookup in ("", "__gt", "__gte", "__lt", "__lte"):
        VALUES[f"{_field}{_lookup}"] = datetime_values(_field, _lookup)
# Every integer with range lookups (retry_count, max_retry_count, retry_interval, and any the
# registry gains), up to the storage's greatest value.
for _field in registry.RECORD_FIELDS:
    if _field.kind == registry.INT and registry.RANGE in _field.lookups:
        for _lookup in ("", "__gt", "__gte", "__lt", "__lte"):
            VALUES[f"{_field.name}{_lookup}"] = integer_values(_field.name, _field.bounds[1])
# The parameters of each field (`version_date`: `version_date`, `version_date__gt`, ...).
FAMILIES: dict[str, list[str]] = {}
for _param in sorted(VALUES):
    FAMILIES.setdefault(split(_param)[0], []).append(_param)


def test_every_parameter_of_the_list_has_cases():
    """Fails when the list gets a parameter without cases here (or loses one)."""
    assert set(VALUES) | {"sort"} == set(FailedIntegrationFilterSet.base_filters)


def mismatches(api_client, regular_client, channel, refs, cases) -> list:
    """The cases (params) whose answer is not the oracle's, with what was answered."""
    records, wrong = stored(channel), []
    for params in cases:
        want = expected(records, refs, params)
        response = answer(api_client, regular_client, channel, params)
        if response.status_code != 200:
            wrong.append((params, response.status_code, response.content[:200]))
            continue
        body = response.json()
        got = [r["pk"] for r in body["results"]]
        if got != want or body["count"] != len(want):
            wrong.append((params, "answered", got, body["count"], "expected", want))
    return wrong


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_filter_answers_the_records_it_names(api_client, regular_client, channel, varied, family):
    cases = [{param: raw.format_map(varied)} for param in FAMILIES[family] for raw in VALUES[param]]

    assert mismatches(api_client, regular_client, channel, varied, cases) == []


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("version_date__lte", "2025-01-02T03:00:00+03:00"),
        ("expiration_date__gt", "2020-01-01T03:00:00+03:00"),
        ("created_date__lt", "2025-02-04T05:30:00+05:30"),
        ("resolved_at", "2025-05-01T03:00:00.000001+03:00"),
        ("next_retry_at__gte", "2025-06-01T00:00:00+00:00"),
    ],
)
def test_the_plus_of_an_offset_left_unencoded_in_a_query_string_is_understood(
    api_client, regular_client, channel, varied, param, value
):
    """`?version_date__lte=2025-01-02T03:00:00+03:00` typed as is: the `+` arrives as a space."""
    encoded = answer(api_client, regular_client, channel, {param: value})
    plain = answer(api_client, regular_client, channel, query=f"{param}={quote(value, safe='+:')}")

    want = expected(stored(channel), varied, {param: value})
    assert 0 < len(want) < len(ROWS)
    assert [r["pk"] for r in encoded.json()["results"]] == want
    assert plain.json() == encoded.json()


def test_the_cases_reach_both_sides_of_every_filter(channel, varied):
    """Each filter's cases answer some records and leave out others: a filter that answered
    everything (or nothing) for all of them would pass unnoticed."""
    total, records = len(ROWS), stored(channel)
    for param, values in VALUES.items():
        sizes = {len(expected(records, varied, {param: v.format_map(varied)})) for v in values}
        assert min(sizes) < total and max(sizes) > 0, (param, sizes)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    chosen=st.lists(
        st.sampled_from(sorted(VALUES)).flatmap(
            lambda param: st.tuples(st.just(param), st.sampled_from(VALUES[param]))
        ),
        min_size=2,
        max_size=3,
        unique_by=lambda pair: pair[0],
    )
)
def test_filters_combine_as_all_of_them(api_client, regular_client, channel, varied, chosen):
    params = {param: raw.format_map(varied) for param, raw in chosen}
    note(repr(params))
    want = expected(stored(channel), varied, params)
    event("some records answered" if want else "no record answered")
    target(float(len(want)), label="records answered")  # toward combinations that answer some

    response = answer(api_client, regular_client, channel, params)

    assert response.status_code == 200, response.content
    assert [r["pk"] for r in response.json()["results"]] == want


def test_unknown_parameters_are_ignored(api_client, regular_client, channel, varied):
    everything = answer(api_client, regular_client, channel).json()

    assert everything["count"] == len(ROWS)
    assert answer(api_client, regular_client, channel, {"colour": "red"}).json() == everything
    assert (
        answer(
            api_client, regular_client, channel, {"colour": "red", "reason_type": "mapping"}
        ).json()
        == answer(api_client, regular_client, channel, {"reason_type": "mapping"}).json()
    )


@pytest.mark.parametrize(
    ("param", "value", "everything"),
    [
        # A time before year 1 or after 9999 once in UTC compares as the earliest or latest.
        ("created_date__gte", "0001-01-01T00:00:00+01:00", True),
        ("created_date__lt", "0001-01-01T00:00:00+01:00", False),
        ("created_date__gt", "0001-01-01T00:00:00+01:00", True),
        ("created_date__lte", "9999-12-31T23:59:59-01:00", True),
        ("created_date__gt", "9999-12-31T23:59:59-01:00", False),
        ("next_retry_at__lt", "9999-12-31T23:59:59-01:00", None),
    ],
)
def test_a_date_time_beyond_the_years_in_utc_compares_as_the_earliest_or_latest(
    api_client, regular_client, channel, varied, param, value, everything
):
    response = answer(api_client, regular_client, channel, {param: value})

    records = stored(channel)
    if everything is None:  # every record that has a value
        want = [r.pk for r in records if r.next_retry_at is not None]
    else:
        want = [r.pk for r in records] if everything else []
    assert [r["pk"] for r in response.json()["results"]] == want


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("version_date", "0001-01-01T00:00:00+01:00"),
        ("version_date__gt", "0001-01-01T00:00:00+01:00"),
        ("next_retry_at__lte", "0001-01-01T00:00:00+00:01"),
        ("expiration_date", "9999-12-31T23:59:59.999999-00:01"),
    ],
)
def test_a_date_time_beyond_the_years_compares_with_the_first_and_last_instants_stored(
    api_client, regular_client, channel, varied, param, value
):
    FailedIntegration.objects.filter(pk=varied["r12"]).update(
        next_retry_at=dt.datetime.min.replace(tzinfo=UTC)
    )

    response = answer(api_client, regular_client, channel, {param: value})

    want = expected(stored(channel), varied, {param: value})
    assert [r["pk"] for r in response.json()["results"]] == want


@pytest.mark.parametrize("field", COUNTED_BY_HOUR)
def test_a_range_filter_at_the_end_of_year_9999_answers_the_records_before_it(
    api_client, regular_client, channel, varied, field
):
    cases = [
        {f"{field}{lookup}": value}
        for lookup in ("__gt", "__gte", "__lt", "__lte")
        for value in ("9999-12-31T23:00:00Z", "9999-12-31T23:59:59.999999Z")
    ]

    assert mismatches(api_client, regular_client, channel, varied, cases) == []


# --- sorting and pages ------------------------------------------------------------------------

SORT_FIELDS = (
    "pk",
    "version_date",
    "expiration_date",
    "retry_count",
    "created_date",
    "modified_date",
)
SORTS = [
    *SORT_FIELDS,
    *(f"-{name}" for name in SORT_FIELDS),
    "retry_count,-version_date",
    "-retry_count,version_date",
    "expiration_date,-created_date",
    "-modified_date,created_date,-pk",
    "created_date,pk",
]


def sorted_pks(records: list[FailedIntegration], sort: str) -> list[int]:
    """The oracle's order: each key in turn, empty values last ascending and first descending,
    then the pk in the direction of the last key."""
    keys = sort.split(",")
    if keys[-1].lstrip("-") != "pk":
        keys.append("-pk" if keys[-1].startswith("-") else "pk")

    def compare(a, b) -> int:
        for key in keys:
            descending, name = key.startswith("-"), key.lstrip("-")
            x, y = getattr(a, name), getattr(b, name)
            if x == y:
                continue
            direction = -1 if descending else 1
            if x is None or y is None:  # empty last ascending
                return direction * (1 if x is None else -1)
            return direction * (-1 if x < y else 1)
        return 0

    return [r.pk for r in sorted(records, key=functools.cmp_to_key(compare))]


def test_every_sort_orders_as_its_keys_say(api_client, regular_client, channel, varied):
    records, wrong = stored(channel), []
    for sort in SORTS:
        response = answer(api_client, regular_client, channel, {"sort": sort})
        got = [r["pk"] for r in response.json()["results"]]
        if got != sorted_pks(records, sort):
            wrong.append((sort, got, sorted_pks(records, sort)))

    assert wrong == []


def test_a_sort_and_a_filter_combine(api_client, regular_client, channel, varied):
    records = stored(channel)
    for sort in SORTS:
        for params in ({"is_active": "true"}, {"state__in": "due,pending,expired"}):
            want = expected(records, varied, params)
            response = answer(api_client, regular_client, channel, {**params, "sort": sort})

            got = [r["pk"] for r in response.json()["results"]]
            assert got == [pk for pk in sorted_pks(records, sort) if pk in want], (params, sort)


@pytest.mark.parametrize("sort", ["-expiration_date", "retry_count,-version_date", "created_date"])
def test_pages_of_a_filtered_sorted_list_are_its_records_in_order(
    api_client, regular_client, channel, varied, sort
):
    params = {"sort": sort, "is_active": "true", "limit": 3}
    records = stored(channel)
    want = [pk for pk in sorted_pks(records, sort) if pk in expected(records, varied, params)]
    pages, page = [], 1
    while True:
        response = api_client.get(list_path(channel), {**params, "page": page})
        if on_postgresql():
            regular = regular_client.get(list_path(channel), {**params, "page": page})
            assert response.json() == regular.json()
        body = response.json()
        assert body["count"] == len(want)
        pages.append([r["pk"] for r in body["results"]])
        if not body["next"]:
            break
        assert "is_active=true" in body["next"] and f"page={page + 1}" in body["next"]
        page += 1

    assert [pk for results in pages for pk in results] == want
    assert all(len(results) == 3 for results in pages[:-1]) and 0 < len(pages[-1]) <= 3


# --- bad values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("reason_type", "timeout"),
        ("reason_type__in", "remote,nope"),
        ("reason_type__in", "remote,"),
        ("is_active", "maybe"),
        ("exhausted", "2"),
        ("expired", "yes please"),
        ("parked", "on"),
        ("content_type", "nothing.here"),
        ("content_type", "999999"),
        ("content_type", "-1"),
        ("content_type__in", "1,x"),
        ("object_id", "abc"),
        ("object_id", "1.5"),
        ("object_id", "-1"),
        ("object_id", str(INT64_MAX + 1)),
        ("object_id", "9" * 25),
        ("object_id__in", "1,,x"),
        ("object_id__in", ",".join(["1"] * 1001)),
        ("pk__in", "0"),
        ("pk__in", "1,-2"),
        ("log_id", "1e3"),
        ("integration_action", "0"),
        ("integration_action__isnull", "sometimes"),
        ("next_retry_at__isnull", "2"),
        ("version_date__gte", "yesterday"),
        ("version_date", "2025-06-27"),
        ("expiration_date__lt", "2025-06-27T08:38:26+0300"),
        ("created_date__gt", "2025-02-30T00:00:00Z"),
        ("resolved_at", "2025-06-27T24:00:00Z"),
        ("retry_count__gte", "-1"),
        ("max_retry_count", str(2**31)),
        ("retry_interval__lt", "x"),
        ("channel", "1; DROP TABLE x"),
        ("state", "sleeping"),
        ("state__in", "due,,pending"),
        ("sort", "colour"),
        ("sort", "-reason_type"),
        ("sort", "pk,,"),
    ],
)
def test_a_bad_value_answers_400_naming_the_parameter(
    api_client, regular_client, channel, param, value
):
    response = answer(api_client, regular_client, channel, {"is_active": "true", param: value})

    assert response.status_code == 400, response.content
    assert list(response.json()) == [param]


# --- known answers on the small set of records ---------------------------------------------------
#
# (parameter, value, the records of the `records` fixture it answers), worked out by hand.

CASES = [
    ("pk__in", lambda r: f"{r['a'].pk},{r['c'].pk}", "ac"),
    ("channel", lambda r: str(r["a"].channel_id), "abcd"),
    ("reason_type", "remote", "bc"),
    ("reason_type__in", "mapping,channel_app", "ad"),
    ("is_active", "false", "c"),
    ("is_active", "True", "abd"),
    ("content_type", lambda r: str(ContentType.objects.get(model="order").pk), "cd"),
    ("content_type", "orders.order", "cd"),
    ("content_type__in", lambda r: f"products.product,{r['d'].content_type_id}", "abcd"),
    ("object_id", "1", "ad"),
    ("object_id__in", "2,3", "bc"),
    ("integration_action", lambda r: str(r["action"].pk), "a"),
    ("integration_action__isnull", "true", "bcd"),
    ("log_id", "20", "b"),
    ("log_id__isnull", "true", "cd"),
    ("expiration_date__isnull", "true", "a"),
    ("version_date", "2025-01-02T00:00:00Z", "b"),
    ("version_date__gt", "2025-01-02T00:00:00Z", "cd"),
    ("version_date__gte", "2025-01-02T00:00:00Z", "bcd"),
    ("version_date__lt", "2025-01-02T00:00:00Z", "a"),
    ("version_date__lte", "2025-01-02T03:00:00+03:00", "ab"),
    ("expiration_date", "2020-01-01T00:00:00Z", "b"),
    ("expiration_date__gt", "2020-06-01T00:00:00Z", "cd"),
    ("expiration_date__gte", "2021-01-01T00:00:00Z", "cd"),
    ("expiration_date__lt", "2021-01-01T00:00:00Z", "b"),
    ("expiration_date__lte", "2021-01-01T00:00:00Z", "bd"),
    ("created_date", "2025-02-03T00:00:00Z", "c"),
    ("created_date__gt", "2025-02-03T00:00:00Z", "d"),
    ("created_date__gte", "2025-02-03T00:00:00Z", "cd"),
    ("created_date__lt", "2025-02-02T00:00:00Z", "a"),
    ("created_date__lte", "2025-02-02T00:00:00Z", "ab"),
    ("modified_date", "2025-03-04T00:00:00Z", "d"),
    ("modified_date__gt", "2025-03-01T00:00:00Z", "bcd"),
    ("modified_date__gte", "2025-03-04T00:00:00Z", "d"),
    ("modified_date__lt", "2025-03-03T00:00:00Z", "ab"),
    ("modified_date__lte", "2025-03-03T00:00:00Z", "abc"),
    ("retry_count", "2", "c"),
    ("retry_count__gt", "1", "cd"),
    ("retry_count__gte", "1", "bcd"),
    ("retry_count__lt", "1", "a"),
    ("retry_count__lte", "1", "ab"),
    ("max_retry_count", "1", "ab"),
    ("max_retry_count__gt", "3", "c"),
    ("max_retry_count__gte", "3", "cd"),
    ("max_retry_count__lt", "3", "ab"),
    ("max_retry_count__lte", "3", "abd"),
    ("retry_interval", "60", "b"),
    ("retry_interval__gt", "60", "cd"),
    ("retry_interval__gte", "60", "bcd"),
    ("retry_interval__lt", "60", "a"),
    ("retry_interval__lte", "60", "ab"),
    ("exhausted", "true", "bd"),
    ("exhausted", "false", "ac"),
    ("expired", "true", "bd"),
    ("expired", "false", "ac"),
    ("parked", "true", "d"),
    ("parked", "false", "abc"),
    # a: active, scheduled, but its channel has no retry endpoint; b, d: past expiration.
    ("state", "pending", "a"),
    ("state", "expired", "bd"),
    ("state", "resolved", "c"),
    ("state", "exhausted", ""),
    ("state__in", "pending,resolved", "ac"),
    ("next_retry_at", "2025-04-01T00:00:00Z", "a"),
    ("next_retry_at__isnull", "true", "bcd"),
    ("next_retry_at__gt", "2025-03-01T00:00:00Z", "a"),
    ("next_retry_at__gte", "2025-04-01T00:00:01Z", ""),
    ("next_retry_at__lt", "2025-04-01T00:00:01Z", "a"),
    ("next_retry_at__lte", "2025-03-31T00:00:00Z", ""),
    ("last_attempt_at", "2025-03-10T00:00:00Z", "a"),
    ("last_attempt_at__gt", "2025-03-09T00:00:00Z", "a"),
    ("last_attempt_at__gte", "2025-03-11T00:00:00Z", ""),
    ("last_attempt_at__lt", "2025-03-11T00:00:00Z", "a"),
    ("last_attempt_at__lte", "2025-03-09T00:00:00Z", ""),
    ("resolved_at", "2025-05-01T00:00:00Z", "c"),
    ("resolved_at__gt", "2025-04-01T00:00:00Z", "c"),
    ("resolved_at__gte", "2025-05-02T00:00:00Z", ""),
    ("resolved_at__lt", "2025-05-02T00:00:00Z", "c"),
    ("resolved_at__lte", "2025-04-30T00:00:00Z", ""),
]


def test_every_filter_answers_the_records_worked_out_by_hand(
    api_client, regular_client, channel, records
):
    wrong = []
    for param, value, names in CASES:
        value = value(records) if callable(value) else value
        response = answer(api_client, regular_client, channel, {param: value})
        got = [r["pk"] for r in response.json()["results"]]
        if got != [records[n].pk for n in names]:
            wrong.append((param, value, got, names))

    assert wrong == []


def test_every_model_field_has_a_filter():
    """Fails when a field is added to the model without a filter for it."""
    filtered = {split(param)[0] for param in FailedIntegrationFilterSet.base_filters}
    unfiltered = {
        field.name
        for field in FailedIntegration._meta.concrete_fields
        if not {field.name, "pk" if field.primary_key else None} & filtered
    }

    assert unfiltered == set(NOT_FILTERED)


# Fields that deliberately have no filter of their own, and why.
NOT_FILTERED = {
    "resolution": "the `state` filter answers it (resolved, superseded, expired)",
    "last_error": "free text of a channel app's answer",
    "lease_owner": "the engine's own bookkeeping",
    "lease_expires_at": "the engine's own bookkeeping (`state=in_progress` answers it)",
    "retry_by_hand": "the engine's own bookkeeping (`state=due` answers it)",
}


@pytest.mark.parametrize("value", ["true", "false"])
def test_a_boolean_filter_s_sql_is_compiled_once_and_keeps_its_value(channel, make_failed, value):
    """The ORM writes a boolean's value into its SQL (`is_active`, `NOT is_active`): each value
    is compiled once (not on every request) and each keeps its own SQL."""
    from integrations.reads import query

    make_failed(object_id=1, is_active=True)
    make_failed(object_id=2, is_active=False)
    query._compiled.clear()
    params = {"is_active": value, "reason_type": "remote"}
    first = query.ListQuery.from_params(params).where_sql("fi")
    compiled = dict(query._compiled)

    again = query.ListQuery.from_params(params).where_sql("fi")
    other = query.ListQuery.from_params({**params, "is_active": str(value == "false").lower()})

    assert again == first and query._compiled.keys() >= compiled.keys()
    assert other.where_sql("fi") != first
    assert len([key for key in query._compiled if key[0] == "is_active"]) == 2
