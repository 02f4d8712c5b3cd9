"""Serializers of the service's own settings endpoints: strict about what they are given."""

from __future__ import annotations

from collections.abc import Mapping

from rest_framework import serializers

UNKNOWN_FIELD = "Unknown field."
READ_ONLY_FIELD = "This field is read-only."
NOT_AN_OBJECT = "Expected an object, but got {type}."
# DRF's number fields take `true` as 1 (`float(True)`); a setting's number is never a boolean.
NUMBER_FIELDS = (serializers.IntegerField, serializers.FloatField, serializers.DecimalField)


class StrictSerializer(serializers.Serializer):
    """A key that is not one of the serializer's writable fields answers 400 naming it, instead
    of being ignored: a setting misspelt must not look saved. A boolean given for a number
    answers 400 too, instead of being taken as 0 or 1."""

    def to_internal_value(self, data):
        if not isinstance(data, Mapping):
            raise serializers.ValidationError(
                {"non_field_errors": [NOT_AN_OBJECT.format(type=type(data).__name__)]}
            )
        errors = {}
        for key in data:
            field = self.fields.get(key)
            if field is None:
                errors[key] = [UNKNOWN_FIELD]
            elif field.read_only:
                errors[key] = [READ_ONLY_FIELD]
            elif isinstance(data[key], bool) and isinstance(field, NUMBER_FIELDS):
                errors[key] = [field.error_messages["invalid"]]
        if errors:
            raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


class StrictModelSerializer(StrictSerializer, serializers.ModelSerializer):
    """A model's serializer (its fields' validators are the rules), strict about keys."""
