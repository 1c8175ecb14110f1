"""Serializer fields that refuse values of the wrong JSON type instead of coercing them.

DRF's CharField turns 42 into "42" and FloatField turns "0.7" into 0.7; a gateway that
forwards values into other services' JSON should say "expected a string" instead.
"""

import math

from rest_framework import serializers

from mmm.jsontypes import json_kind


class StrictCharField(serializers.CharField):
    default_error_messages = {"not_a_string": "must be a string, not {kind}"}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string", kind=json_kind(data))
        return super().to_internal_value(data)


class StrictNumberField(serializers.Field):
    default_error_messages = {
        "not_a_number": "must be a number, not {kind}",
        "not_finite": "must be a finite number",
        "min_value": "must be at least {min_value}",
        "max_value": "must be at most {max_value}",
    }

    def __init__(self, *, min_value: float | None = None, max_value: float | None = None, **kwargs):
        self.min_value, self.max_value = min_value, max_value
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("not_a_number", kind=json_kind(data))
        if not math.isfinite(data):
            self.fail("not_finite")
        if self.min_value is not None and data < self.min_value:
            self.fail("min_value", min_value=self.min_value)
        if self.max_value is not None and data > self.max_value:
            self.fail("max_value", max_value=self.max_value)
        return data

    def to_representation(self, value):
        return value


class StrictIntegerField(StrictNumberField):
    default_error_messages = {"not_an_integer": "must be a whole number"}

    def to_internal_value(self, data):
        number = super().to_internal_value(data)
        if isinstance(number, float):
            if not number.is_integer():
                self.fail("not_an_integer")
            number = int(number)
        return number


class StrictBooleanField(serializers.Field):
    default_error_messages = {"not_a_boolean": "must be true or false, not {kind}"}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("not_a_boolean", kind=json_kind(data))
        return data

    def to_representation(self, value):
        return value


class RefuseUnknownFieldsMixin:
    """Answer 400 naming every field the serializer does not know, instead of ignoring it."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["is not a known field"] for name in unknown})
        return super().to_internal_value(data)
