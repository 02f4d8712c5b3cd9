"""Properties of a report's body, from bodies valid by construction (drawn from the field
registry): each is stored and answered as sent; each with one field made wrong answers 400
naming that field alone, with its message, and stores nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db.models.signals import post_init, pre_init
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from integrations.models import FailedIntegration
from integrations.records import services, validation
from integrations.records.registry import BOOL, CHOICE, DATETIME, INT, WRITABLE, RecordField

pytestmark = pytest.mark.django_db

EXAMPLES = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))

# Offsets RFC 3339 allows, within a day.
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)
# A day inside the years 0001-9999 whatever the offset, written as RFC 3339.
instants = st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=offsets
)


def valid_value(field: RecordField, refs: dict) -> st.SearchStrategy:
    """A value the field takes, as JSON."""
    if field.name == "channel":
        values = st.just(refs["channel"])
    elif field.name == "content_type":
        values = st.sampled_from(refs["content_types"])
    elif field.name == "integration_action":
        values = st.just(refs["action"])
    elif field.kind == INT:
        values = st.integers(*field.bounds)
    elif field.kind == BOOL:
        values = st.booleans()
    elif field.kind == CHOICE:
        values = st.sampled_from(field.choices)
    else:
        assert field.kind == DATETIME, field
        values = instants.map(dt.datetime.isoformat)
    return st.none() | values if field.nullable else values


def valid_bodies(refs: dict) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {f.name: valid_value(f, refs) for f in WRITABLE if f.required},
        optional={f.name: valid_value(f, refs) for f in WRITABLE if not f.required},
    )


def answered_as(field: RecordField, value):
    """How the record's JSON answers `value` as sent."""
    if field.kind == DATETIME and value is not None:
        utc = dt.datetime.fromisoformat(value).astimezone(dt.UTC)
        return utc.isoformat(timespec="microseconds").replace("+00:00", "Z")
    return value


def mistakes(field: RecordField, refs: dict) -> list[tuple[object, str | None]]:
    """Wrong values of the field, each with the message it is answered."""
    by_kind = {
        INT: validation.NOT_INTEGER,
        BOOL: validation.NOT_BOOLEAN,
        DATETIME: validation.BAD_DATETIME,
    }
    wrong: list[tuple[object, str | None]] = [
        (other, by_kind.get(field.kind, f'"{other}" is not a valid choice.'))
        for other in ({"a": 1}, [1])
    ]
    if not field.nullable:
        wrong.append((None, validation.NOT_NULL))
    if field.kind == INT:
        low, high = field.bounds
        wrong += [
            ("12", validation.NOT_INTEGER),
            (True, validation.NOT_INTEGER),
            (1.5, validation.NOT_INTEGER),
            (high + 1, f"Ensure this value is less than or equal to {high}."),
            (low - 1, f"Ensure this value is greater than or equal to {low}."),
        ]
        if field.name == "channel":
            wrong.append(
                (
                    refs["channel"] + 1,
                    f"Must be the channel of the URL ({refs['channel']}) or left out.",
                )
            )
    elif field.kind == BOOL:
        wrong += [("true", validation.NOT_BOOLEAN), (1, validation.NOT_BOOLEAN)]
    elif field.kind == CHOICE:
        upper = field.choices[0].upper()
        wrong += [
            ("nope", '"nope" is not a valid choice.'),
            (upper, f'"{upper}" is not a valid choice.'),
        ]
    else:
        wrong += [
            ("2025-13-01T00:00:00Z", validation.BAD_DATETIME),
            ("2025-06-27 08:38:26", validation.BAD_DATETIME),
            ("2025-06-27T08:38:26+24:00", validation.BAD_DATETIME),
            ("0001-01-01T00:00:00+01:00", validation.DATETIME_RANGE),
            (1751013506, validation.BAD_DATETIME),
        ]
    if field.required:
        wrong.append((Missing, validation.REQUIRED))
    return wrong


class Missing:
    """Left out of the body."""


@pytest.fixture
def refs(channel, product_type, order_type, integration_action) -> dict:
    return {
        "channel": channel.pk,
        "content_types": [product_type.pk, order_type.pk],
        "action": integration_action.pk,
    }


def url(channel_id: int) -> str:
    return f"/api/v1/channel/{channel_id}/failed_integrations/"


@EXAMPLES
@given(data=st.data())
def test_a_valid_body_is_stored_and_answered_as_sent(api_client, refs, data):
    body = data.draw(valid_bodies(refs), label="body")
    # Alone of its object: an earlier example's newer version would supersede it at once.
    FailedIntegration.objects.all().delete()

    created = api_client.post(url(refs["channel"]), body, format="json")

    assert created.status_code == 201, created.content
    answer = created.json()
    fields = {f.name: f for f in WRITABLE}
    for name, value in body.items():
        assert answer[name] == answered_as(fields[name], value), name
    again = api_client.get(f"{url(refs['channel'])}{answer['pk']}/").json()
    assert {name: again[name] for name in body} == {name: answer[name] for name in body}


@EXAMPLES
@given(data=st.data())
def test_a_body_with_one_wrong_field_answers_400_naming_it_and_stores_nothing(
    api_client, refs, data
):
    body = data.draw(valid_bodies(refs), label="body")
    field = data.draw(st.sampled_from(WRITABLE), label="field")
    wrong, message = data.draw(st.sampled_from(mistakes(field, refs)), label="wrong")
    if wrong is Missing:
        body.pop(field.name, None)
    else:
        body[field.name] = wrong
    note(f"body: {body}")
    before = FailedIntegration.objects.count()

    answer = api_client.post(url(refs["channel"]), body, format="json")

    assert answer.status_code == 400, answer.content
    errors = answer.json()
    assert list(errors) == [field.name], errors
    assert errors[field.name] == [message]
    assert FailedIntegration.objects.count() == before


@EXAMPLES
@given(data=st.data())
def test_a_record_built_for_intake_is_the_one_the_model_builds_from_the_same_values(refs, data):
    """`services.new_records` builds records positionally for speed: each field must hold what
    `FailedIntegration(**values)` gives it, defaults included."""
    body = data.draw(valid_bodies(refs), label="body")
    values, errors = validation.validate_item(body, channel_id=refs["channel"])
    assert not errors

    now = dt.datetime.now(dt.UTC)
    built = services.new_records(refs["channel"], [values, values], now=now)
    expected = FailedIntegration(
        channel_id=refs["channel"], created_date=now, modified_date=now, **values
    )

    for record in built:
        for field in FailedIntegration._meta.concrete_fields:
            if field.generated:  # unset until the database says it
                with pytest.raises(AttributeError):
                    getattr(record, field.attname)
            else:
                assert getattr(record, field.attname) == getattr(expected, field.attname)
    assert built[0] is not built[1]


def test_a_value_that_is_no_field_is_refused_when_records_are_built(refs):
    with pytest.raises(TypeError, match="no_such_field"):
        services.new_records(
            refs["channel"], [{"object_id": 1, "no_such_field": 2}], now=dt.datetime.now(dt.UTC)
        )


def test_nothing_listens_to_a_record_being_built():
    """`services.new_records` does not run `Model.__init__`: a `pre_init` or `post_init`
    receiver of the model would not hear of the records a report builds."""
    assert not pre_init.has_listeners(FailedIntegration)
    assert not post_init.has_listeners(FailedIntegration)
