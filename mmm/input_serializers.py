"""DRF serializers for request input: fields built once per process, and a fast path for valid input.

DRF deep-copies a serializer's declared fields for every instance, and binds the copies to it:
for the /v1 chat input (a nested serializer per message) that was 7% of a request's CPU under
load. Validating input only reads the fields, so one bound set serves every request: it is
made for the first instance of each class and kept on the class.

Only for input validated from ``data`` alone: no ``instance``, no ``partial``, no ``context``
(the fields' ``root`` stays the first instance). Validation never waits on I/O, so greenlets
cannot interleave inside it; in threads (gthread) it reads shared fields and writes nothing to
them.

Even with the fields bound once, ``is_valid()`` cost 4-5% of a request's CPU (run_validation,
validators, SkipField and ErrorDetail on every field). ``validated(cls, data)`` returns what
``cls(data=data).validated_data`` would, from a plan compiled once per class out of its bound
fields: a few type and length checks per field. The serializer stays the one definition (and
the OpenAPI schema's source): the plan covers only the field types and options it reproduces
exactly, a class with anything else gets no plan, and any input the plan is not sure of (every
invalid one among them) goes through the serializer, so each error is DRF's own.
"""

import math
import re
from collections.abc import Callable
from typing import Any

from django.core.validators import MaxLengthValidator, MinLengthValidator, ProhibitNullCharactersValidator
from rest_framework import serializers
from rest_framework.fields import empty
from rest_framework.utils import json as drf_json  # JSONField's: allow_nan=False
from rest_framework.utils.serializer_helpers import BindingDict
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from mmm.api_fields import (
    RefuseUnknownFieldsMixin,
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    StrictNumberField,
)

_ATTRIBUTE = "_fields_bound_once"
_PLAN_ATTRIBUTE = "_fast_validation_plan"


class BoundOnceSerializer(serializers.Serializer):
    @property
    def fields(self) -> BindingDict:
        shared = type(self).__dict__.get(_ATTRIBUTE)
        if shared is None:
            shared = BindingDict(self)
            for name, field in self.get_fields().items():
                shared[name] = field
            setattr(type(self), _ATTRIBUTE, shared)  # two first requests may both build one: same fields
        return shared


Plan = Callable[[Any], Any]


class _Unsure(Exception):
    """The plan cannot vouch for this value: the serializer decides, and words any error."""


def validated(serializer_class: type[serializers.Serializer], data: Any) -> Any:
    """``serializer_class(data=data)``'s validated_data, or its ValidationError (raised)."""
    plan = fast_plan(serializer_class)
    if plan is not None:
        try:
            return plan(data)
        except _Unsure:
            pass
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def fast_plan(serializer_class: type[serializers.Serializer]) -> Plan | None:
    """The class's compiled plan, or None when only the serializer can validate its input."""
    # Looked up in the class's own __dict__: ChatInput subclasses ModelRequestInput and must not
    # inherit its plan.
    plan = serializer_class.__dict__.get(_PLAN_ATTRIBUTE)
    if plan is None:
        plan = (_plain_serializer_class(serializer_class) and _compile_serializer(serializer_class())) or False
        setattr(serializer_class, _PLAN_ATTRIBUTE, plan)  # two first requests may both compile: same plan
    return plan or None


# Serializer methods a plan reproduces; a class that overrides any of them (RefuseUnknownFieldsMixin's
# to_internal_value among them) validates some other way.
_SERIALIZER_METHODS = (
    "__new__",
    "__init__",
    "is_valid",
    "validated_data",
    "run_validation",
    "validate_empty_values",
    "to_internal_value",
    "run_validators",
    "get_validators",
    "validate",
    "get_fields",
)
_FIELDS_PROPERTIES = (serializers.Serializer.fields, BoundOnceSerializer.fields)
# Beyond 2**53, math.isfinite's conversion to float can overflow: DRF's behaviour there is DRF's.
_INT_LIMIT = 2**53
_SURROGATE = re.compile("[\ud800-\udfff]")


def _plain_serializer_class(cls: type) -> bool:
    """Whether ``cls`` validates the way Serializer does, field by field and nothing else."""
    if not issubclass(cls, serializers.Serializer) or issubclass(cls, RefuseUnknownFieldsMixin):
        return False
    if any(getattr(cls, name) is not getattr(serializers.Serializer, name) for name in _SERIALIZER_METHODS):
        return False
    return any(cls.fields is fields for fields in _FIELDS_PROPERTIES)


def _compile_serializer(serializer: serializers.Serializer) -> Plan | None:
    if not _plain_serializer_class(type(serializer)) or serializer.validators:
        return None  # validators: Meta.validators, run on the whole validated dict
    if getattr(serializer.root, "partial", False) or serializer.read_only:
        return None
    steps = []
    for name, field in serializer.fields.items():
        if field.read_only:
            continue  # not among DRF's _writable_fields: never in validated_data
        # DRF calls validate_<field_name> when there is one, even one it defines (validate_empty_values).
        if getattr(serializer, "validate_" + field.field_name, None) is not None:
            return None
        check = _compile_field(field)
        if check is None or field.source != name or field.field_name != name:
            return None
        if field.default is not empty and callable(field.default):
            return None  # a default may depend on the serializer or hand out a fresh object
        if field.required:
            missing = _REQUIRED
        elif field.default is empty:
            missing = _SKIP
        else:
            missing = field.default  # DRF hands out the default itself, not a copy
        steps.append((name, check, field.allow_null, missing))
    return _object_plan(tuple(steps))


_REQUIRED, _SKIP = object(), object()


def _object_plan(steps: tuple) -> Plan:
    def check(data):
        # A QueryDict (form input) takes DRF's HTML-input paths; any other mapping is rarer still.
        if type(data) is not dict:
            raise _Unsure
        out = {}
        for name, check_value, allow_null, missing in steps:
            value = data.get(name, empty)
            if value is empty:
                if missing is _REQUIRED:
                    raise _Unsure
                if missing is not _SKIP:
                    out[name] = missing
            elif value is None:
                if not allow_null:
                    raise _Unsure
                out[name] = None
            else:
                out[name] = check_value(value)
        return out

    return check


def _compile_field(field: serializers.Field) -> Plan | None:
    kind = type(field)  # exactly: a subclass may validate differently
    if kind is StrictCharField:
        return _char_plan(field)
    if field.validators:
        return None
    if kind is StrictNumberField or kind is StrictIntegerField:
        return _number_plan(field, integer=kind is StrictIntegerField)
    if kind is StrictBooleanField:
        return _boolean
    if kind is serializers.JSONField:
        return None if field.binary or field.encoder is not None else _json_value
    if kind is serializers.ListSerializer:
        return _list_plan(field)
    return None


def _char_plan(field: StrictCharField) -> Plan | None:
    trim, allow_blank = field.trim_whitespace, field.allow_blank
    max_length, min_length = field.max_length, field.min_length
    expected = {ProhibitNullCharactersValidator: None, ProhibitSurrogateCharactersValidator: None}
    if max_length is not None:
        expected[MaxLengthValidator] = max_length
    if min_length is not None:
        expected[MinLengthValidator] = min_length
    found = {type(v): getattr(v, "limit_value", None) for v in field.validators}
    if len(field.validators) != len(expected) or found != expected:
        return None  # a validator of the field's own, or lengths set after construction

    def check(value):
        if type(value) is not str:
            raise _Unsure
        if trim:
            value = value.strip()
        if not value:
            # CharField.run_validation answers "" before to_internal_value and the validators.
            if allow_blank:
                return ""
            raise _Unsure
        if max_length is not None and len(value) > max_length:
            raise _Unsure
        if min_length is not None and len(value) < min_length:
            raise _Unsure
        if "\x00" in value or (not value.isascii() and _SURROGATE.search(value)):
            raise _Unsure
        return value

    return check


def _number_plan(field: StrictNumberField, *, integer: bool) -> Plan | None:
    low, high = field.min_value, field.max_value
    if any(limit is not None and type(limit) not in (int, float) for limit in (low, high)):
        return None

    def check(value):
        kind = type(value)  # bool is not int here, as StrictNumberField refuses it
        if kind is float:
            if not math.isfinite(value):
                raise _Unsure
        elif kind is not int or not -_INT_LIMIT < value < _INT_LIMIT:
            raise _Unsure
        if (low is not None and value < low) or (high is not None and value > high):
            raise _Unsure
        if integer and kind is float:
            if not value.is_integer():
                raise _Unsure
            return int(value)
        return value

    return check


def _boolean(value):
    if type(value) is not bool:
        raise _Unsure
    return value


def _json_value(value):
    # JSONField's to_internal_value only checks that DRF's json.dumps takes the value (NaN and
    # infinities it refuses); a str it always takes. Anything it refuses (or raises on) goes to the serializer to fail the same way.
    if type(value) is not str:
        try:
            drf_json.dumps(value)
        except Exception:
            raise _Unsure from None
    return value


def _list_plan(field: serializers.ListSerializer) -> Plan | None:
    check_item = _compile_serializer(field.child)
    if check_item is None:
        return None
    allow_empty, max_length, min_length = field.allow_empty, field.max_length, field.min_length

    def check(value):
        if type(value) is not list:
            raise _Unsure
        length = len(value)
        if (not length and not allow_empty) or (max_length is not None and length > max_length):
            raise _Unsure
        if min_length is not None and length < min_length:
            raise _Unsure
        return [check_item(item) for item in value]

    return check
