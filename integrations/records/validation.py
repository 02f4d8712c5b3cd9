"""Validation of a failed integration as a channel app sends it, by the field registry's rules
(kinds, bounds, nullability, choices), for single writes (POST, PUT, PATCH) and bulk intake.

It is plain Python rather than a DRF serializer because bulk intake validates a thousand items
per request; messages are DRF's, so answers look the same as everywhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.contrib.contenttypes.models import ContentType

from common.fields import parse_datetime_utc
from integrations.models import IntegrationAction
from integrations.records.registry import BOOL, CHOICE, INT, WRITABLE, RecordField

REQUIRED = "This field is required."
NOT_NULL = "This field may not be null."
NOT_INTEGER = "A valid integer is required."
NOT_BOOLEAN = "Must be a boolean (true or false)."
BAD_DATETIME = (
    "Datetime has wrong format. Use RFC 3339, e.g. 2025-06-27T08:38:26.936Z "
    "(an offset is converted to UTC; no offset means UTC)."
)
DATETIME_RANGE = "Datetime value out of range (years 0001 to 9999 in UTC)."
NOT_OBJECT = "Invalid data. Expected a dictionary, but got {type}."


class _Invalid(Exception):
    def __init__(self, message: str):
        self.message = message


def _check_int(field: RecordField, value: Any) -> int:
    if isinstance(value, bool):
        raise _Invalid(NOT_INTEGER)
    # orjson reads integers beyond 64 bits as floats: answer them as out of range.
    if isinstance(value, float) and not value.is_integer():
        raise _Invalid(NOT_INTEGER)
    if not isinstance(value, int | float):
        raise _Invalid(NOT_INTEGER)
    minimum, maximum = field.bounds
    if value > maximum:
        raise _Invalid(f"Ensure this value is less than or equal to {maximum}.")
    if value < minimum:
        raise _Invalid(f"Ensure this value is greater than or equal to {minimum}.")
    if isinstance(value, float):
        raise _Invalid(NOT_INTEGER)
    return value


def _check_value(rule: RecordField, value: Any) -> Any:
    if rule.kind == INT:
        return _check_int(rule, value)
    if rule.kind == BOOL:
        if isinstance(value, bool):
            return value
        raise _Invalid(NOT_BOOLEAN)
    if rule.kind == CHOICE:
        if isinstance(value, str) and value in rule.choices:
            return value
        raise _Invalid(f'"{value}" is not a valid choice.')
    if not isinstance(value, str):
        raise _Invalid(BAD_DATETIME)
    try:
        return parse_datetime_utc(value)
    except OverflowError:
        raise _Invalid(DATETIME_RANGE) from None
    except ValueError:
        raise _Invalid(BAD_DATETIME) from None


def validate_item(
    data: Any, *, channel_id: int, partial: bool = False
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Checks one item's fields (not yet its foreign keys, see `check_references`).

    Answers the model attributes to write and the errors by field. The channel is the URL's:
    the item may repeat it, and it is never among the values written.
    """
    if not isinstance(data, Mapping):
        return {}, {"non_field_errors": [NOT_OBJECT.format(type=type(data).__name__)]}
    values: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for rule in WRITABLE:
        if rule.name not in data:
            if rule.required and not partial:
                errors[rule.name] = [REQUIRED]
            continue
        value = data[rule.name]
        if value is None:
            if rule.nullable:
                values[rule.target] = None
            else:
                errors[rule.name] = [NOT_NULL]
            continue
        try:
            checked = _check_value(rule, value)
        except _Invalid as invalid:
            errors[rule.name] = [invalid.message]
            continue
        if rule.name == "channel":
            if checked != channel_id:
                errors["channel"] = [f"Must be the channel of the URL ({channel_id}) or left out."]
            continue
        values[rule.target] = checked
    return values, errors


def check_references(
    items: Iterable[dict[str, Any]], *, channel_id: int
) -> list[dict[str, list[str]]]:
    """Checks the foreign keys of validated items with one query for all of them.

    Answers one dict of errors per item (empty when the item is fine).
    """
    items = list(items)
    action_ids = {
        item["integration_action_id"]
        for item in items
        if item.get("integration_action_id") is not None
    }
    # Only the channel's own actions are looked up: another channel's answers exactly as one
    # that does not exist, so that no channel can learn which actions other channels have.
    known_actions = (
        set(
            IntegrationAction.objects.filter(pk__in=action_ids, channel_id=channel_id).values_list(
                "pk", flat=True
            )
        )
        if action_ids
        else set()
    )
    results: list[dict[str, list[str]]] = []
    for item in items:
        errors: dict[str, list[str]] = {}
        content_type_id = item.get("content_type_id")
        if content_type_id is not None and not content_type_known(content_type_id):
            errors["content_type"] = [
                f'Invalid pk "{content_type_id}" - object does not exist. '
                "See /api/v1/content_types/."
            ]
        action_id = item.get("integration_action_id")
        if action_id is not None and action_id not in known_actions:
            errors["integration_action"] = [f'Invalid pk "{action_id}" - object does not exist.']
        results.append(errors)
    return results


def content_type_known(content_type_id: int) -> bool:
    try:
        ContentType.objects.get_for_id(content_type_id)
    except ContentType.DoesNotExist:
        return False
    return True
