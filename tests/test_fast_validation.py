"""mmm.input_serializers.validated answers exactly as the serializer does, on valid input and invalid.

Every case goes both ways: through ``validated`` and through ``cls(data=...).is_valid()``. A valid
input gives equal validated_data (same types, same key order); an invalid one raises a
ValidationError whose detail equals the serializer's errors, codes included. The plan alone is
also checked: it may only answer for inputs the serializer accepts, and must answer for the
ordinary ones (otherwise the fast path would be a slow path that always falls back).
"""

import json
import random

import pytest
from django.http import QueryDict
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from inference.openai_views import ChatInput, MessageInput, ModelRequestInput
from inference.views import CompletionView
from mmm import input_serializers
from mmm.api_fields import (
    RefuseUnknownFieldsMixin,
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    StrictNumberField,
)
from mmm.input_serializers import BoundOnceSerializer, _Unsure, fast_plan, validated

CompletionInput = CompletionView.InputSerializer
MISSING = object()  # a key left out of the body


def _circular() -> list:
    loop: list = []
    loop.append(loop)
    return loop


STRINGS = [
    "m",
    " m ",
    "\u00a0m\u2003",  # str.strip's whitespace is Unicode's, as DRF's is
    "",
    "   ",
    "\t\n",
    "a" * 64,
    "a" * 65,
    "a" * 200,
    "a" * 201,
    " " + "a" * 200 + " ",  # 200 once trimmed
    "a\x00b",
    "\x00",
    "\ud800",
    "x\udfffy",
    "é",
    "日本語",
    "🙂",
    42,
    4.2,
    True,
    None,
    [],
    {},
    ["m"],
    MISSING,
]
NUMBERS = [
    0,
    1,
    -1,
    0.0,
    -0.0,
    0.7,
    1.0,
    5.0,
    5.5,
    1e308,
    2**52,
    2**60,
    10**400,
    float("nan"),
    float("inf"),
    float("-inf"),
    True,
    False,
    "0.7",
    "5",
    None,
    [],
    {},
    MISSING,
]
BOOLEANS = [True, False, 0, 1, "true", "", None, [], MISSING]
CONTENTS = [
    "hi",
    "",
    "  ",
    "a\x00b",
    None,
    0,
    1.5,
    float("nan"),
    True,
    [],
    {},
    [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:..."}}],
    {"a": [1, {"b": None, "c": [True, 2.5, "x"]}]},
    {1: "int keys are json.dumps-able"},
    {(1, 2): "tuple keys are not"},
    {"x"},
    object(),
    b"bytes",
    _circular(),
    10**5000,  # json.dumps refuses past the int-to-str digit limit
    MISSING,
]
MESSAGE_LISTS = [
    [{"role": "user", "content": "hi"}],
    [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "t"}]},
    ],
    [{"role": "user"}],
    [{"role": " user ", "content": "hi", "name": "extra keys are ignored"}],
    [],
    [{"content": "no role"}],
    [{"role": "user"}, {"content": "no role"}],
    [{"role": 1, "content": "hi"}],
    [{"role": "", "content": "hi"}],
    [{"role": "a" * 65}],
    [None],
    ["user"],
    [[{"role": "user"}]],
    {"role": "user"},
    "hi",
    None,
    0,
    MISSING,
]


def _body(**values) -> dict:
    return {key: value for key, value in values.items() if value is not MISSING}


def _outcome(call):
    try:
        return "valid", call()
    except ValidationError as exc:
        return "invalid", exc.detail
    except Exception as exc:  # whatever DRF lets through, the fast path must let through too
        return "raises", type(exc)


def _by_serializer(cls, data):
    serializer = cls(data=data)
    if serializer.is_valid():
        return serializer.validated_data
    raise ValidationError(serializer.errors)


def _shape(value):
    """The value's types all the way down: equal values may still differ in dict vs OrderedDict."""
    if isinstance(value, dict):
        return type(value), [(key, _shape(item)) for key, item in value.items()]
    if isinstance(value, list):
        return type(value), [_shape(item) for item in value]
    return type(value)


def assert_same_answer(cls, data) -> bool:
    """Whether the fast plan answered ``data`` itself (True) or left it to the serializer."""
    expected = _outcome(lambda: _by_serializer(cls, data))
    got = _outcome(lambda: validated(cls, data))
    assert got[0] == expected[0], (data, got, expected)
    if expected[0] == "valid":
        assert got[1] == expected[1] and _shape(got[1]) == _shape(expected[1]), data
    elif expected[0] == "invalid":
        assert got[1] == expected[1], data
        assert ValidationError(got[1]).get_codes() == ValidationError(expected[1]).get_codes(), data
    else:
        assert got[1] is expected[1], data

    plan = fast_plan(cls)
    try:
        answer = plan(data)
    except _Unsure:
        return False
    assert expected[0] == "valid", f"the plan accepted what the serializer refuses: {data!r}"
    assert answer == expected[1] and _shape(answer) == _shape(expected[1]), data
    return True


@pytest.mark.parametrize("cls", [ChatInput, ModelRequestInput, CompletionInput])
def test_each_input_class_has_a_plan(cls):
    assert fast_plan(cls) is not None


def test_the_seed_body_field_by_field():
    fast = 0
    for value in STRINGS:
        fast += assert_same_answer(CompletionInput, _body(input=value, model_name="m"))
        fast += assert_same_answer(CompletionInput, _body(input="hello", model_name=value))
    for value in NUMBERS:
        fast += assert_same_answer(CompletionInput, _body(input="hello", model_name="m", temperature=value))
    assert assert_same_answer(CompletionInput, {"input": "hello", "model_name": "m"})
    assert assert_same_answer(CompletionInput, {"input": "hello", "model_name": "m", "top_p": 0.5, "n": [1]})
    assert fast > 20  # the ordinary values never needed the serializer


def test_the_chat_body_field_by_field():
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    fast = 0
    for value in STRINGS:
        fast += assert_same_answer(ChatInput, _body(**{**base, "model": value}))
        fast += assert_same_answer(ChatInput, _body(model="m", messages=[_body(role=value, content="hi")]))
    for value in CONTENTS:
        fast += assert_same_answer(ChatInput, _body(model="m", messages=[_body(role="user", content=value)]))
    for messages in MESSAGE_LISTS:
        fast += assert_same_answer(ChatInput, _body(model="m", messages=messages))
    for value in BOOLEANS:
        fast += assert_same_answer(ChatInput, _body(**{**base, "stream": value}))
    for name in ("temperature", "max_tokens", "max_completion_tokens"):
        for value in NUMBERS:
            fast += assert_same_answer(ChatInput, _body(**{**base, name: value}))
    assert fast > 60


def test_the_passthrough_body_field_by_field():
    for value in STRINGS:
        assert_same_answer(ModelRequestInput, _body(model=value, input="embed me"))
    for value in BOOLEANS:
        assert_same_answer(ModelRequestInput, _body(model="m", stream=value))
    # Everything else is the upstream's business: ignored here, passed on by the view.
    assert assert_same_answer(ModelRequestInput, {"model": "m", "input": ["a", 1], "dimensions": 8, "x": None})


@pytest.mark.parametrize("cls", [ChatInput, ModelRequestInput, CompletionInput, MessageInput])
@pytest.mark.parametrize(
    "data",
    [None, [], [{"model": "m"}], "model=m", b"{}", 0, True, {}, QueryDict("model=m&input=x&model_name=m")],
    ids=repr,
)
def test_anything_but_a_plain_dict_is_the_serializers(cls, data):
    assert not assert_same_answer(cls, data)


@pytest.mark.parametrize("seed", range(4))
def test_random_bodies_answer_as_the_serializer_does(seed):
    """Bodies mixing every field's values at random, valid and invalid fields together."""
    rng = random.Random(seed)

    def pick(pool, usual):
        # Mostly an ordinary value, so that whole bodies are valid often enough to test the plan's answers.
        return rng.choice(usual if rng.random() < 0.8 else pool)

    def string():
        return pick(STRINGS, ["m", " m ", "é", "a" * 64])

    def number():
        return pick(NUMBERS, [MISSING, None, 0, 1, 0.7, 5.0])

    answered = 0
    for _ in range(300):
        messages = [
            _body(role=string(), content=pick(CONTENTS, ["hi", None, MISSING, [{"type": "text"}]]))
            for _ in range(rng.choice([1, 2, 3]))
        ]
        chat = _body(
            model=string(),
            stream=pick(BOOLEANS, [True, False, MISSING]),
            messages=pick(MESSAGE_LISTS, [messages]),
            temperature=number(),
            max_tokens=number(),
            max_completion_tokens=number(),
            tools=pick(CONTENTS, [MISSING]),
        )
        answered += assert_same_answer(ChatInput, chat)
        assert_same_answer(ModelRequestInput, chat)
        assert_same_answer(CompletionInput, _body(input=string(), model_name=string(), temperature=number()))
    assert answered > 20  # valid bodies were among them, and the plan answered those


def test_a_plain_valid_chat_body_takes_the_fast_path():
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": "hello"},
        ],
        "stream": True,
        "max_tokens": 16.0,
        "temperature": 0,
    }

    assert fast_plan(ChatInput)(body) == {
        "model": "m",
        "stream": True,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": "hello"},
        ],
        "temperature": 0,
        "max_tokens": 16,
    }
    assert type(validated(ChatInput, body)["max_tokens"]) is int


def test_errors_come_from_the_serializer_with_its_messages():
    with pytest.raises(ValidationError) as raised:
        validated(ChatInput, {"model": 42, "messages": [{"role": "user"}, {"content": "x"}], "max_tokens": 1.5})

    assert raised.value.detail == {
        "model": ["must be a string, not a number"],
        "messages": {1: {"role": ["This field is required."]}},
        "max_tokens": ["must be a whole number"],
    }
    assert raised.value.get_codes()["model"] == ["not_a_string"]


# Classes the plan must not touch: each validates some way the plan does not reproduce.


class WithValidateField(BoundOnceSerializer):
    name = StrictCharField()

    def validate_name(self, value):
        return value.upper()


class WithValidate(BoundOnceSerializer):
    name = StrictCharField()

    def validate(self, attrs):
        return {**attrs, "checked": True}


class WithMetaValidators(BoundOnceSerializer):
    name = StrictCharField()

    class Meta:
        validators = [lambda attrs: None]


class WithDrfCharField(BoundOnceSerializer):
    name = serializers.CharField()  # coerces 42 to "42"


class WithIntegerField(BoundOnceSerializer):
    count = serializers.IntegerField()


class WithOwnValidator(BoundOnceSerializer):
    name = StrictCharField(validators=[lambda value: None])


class WithCallableDefault(BoundOnceSerializer):
    tags = serializers.JSONField(default=list)


class WithSource(BoundOnceSerializer):
    name = StrictCharField(source="title")


class WithUnknownFieldsRefused(RefuseUnknownFieldsMixin, BoundOnceSerializer):
    name = StrictCharField()


class NarrowerCharField(StrictCharField):
    def to_internal_value(self, data):
        return super().to_internal_value(data).lower()


class WithCharSubclass(BoundOnceSerializer):
    name = NarrowerCharField()


class WithBinaryJson(BoundOnceSerializer):
    blob = serializers.JSONField(binary=True)


class WithNestedValidate(BoundOnceSerializer):
    items = WithValidateField(many=True)


class WithNestedSingle(BoundOnceSerializer):
    item = MessageInput()  # not many=True: not a list plan


@pytest.mark.parametrize(
    "cls",
    [
        WithValidateField,
        WithValidate,
        WithMetaValidators,
        WithDrfCharField,
        WithIntegerField,
        WithOwnValidator,
        WithCallableDefault,
        WithSource,
        WithUnknownFieldsRefused,
        WithCharSubclass,
        WithBinaryJson,
        WithNestedValidate,
        WithNestedSingle,
    ],
)
def test_a_class_the_plan_does_not_understand_always_uses_the_serializer(cls):
    assert fast_plan(cls) is None
    for data in [
        {"name": "x"},
        {"name": 42},
        {"count": "3"},
        {"tags": [1]},
        {"title": "t"},
        {"name": "x", "other": 1},
        {"name": "MiXeD"},
        {"blob": "[1]"},
        {"items": [{"name": "x"}]},
        {"item": {"role": "user"}},
        {},
    ]:
        assert _outcome(lambda data=data: validated(cls, data)) == _outcome(lambda data=data: _by_serializer(cls, data))


def test_the_serializers_own_ways_show_through_the_fallback():
    assert validated(WithValidateField, {"name": "x"}) == {"name": "X"}
    assert validated(WithDrfCharField, {"name": 42}) == {"name": "42"}
    assert validated(WithValidate, {"name": "x"}) == {"name": "x", "checked": True}


class Everything(BoundOnceSerializer):
    """Every option the plan reproduces, so each is checked against DRF on its own."""

    label = StrictCharField(required=False, allow_null=True, allow_blank=True, min_length=2, max_length=5)
    exact = StrictCharField(required=False, trim_whitespace=False, min_length=2)
    mode = StrictCharField(required=False, default="auto")
    ratio = StrictNumberField(required=False, min_value=-1.5, max_value=2)
    count = StrictIntegerField(required=False, default=3, max_value=10)
    flag = StrictBooleanField(required=False, allow_null=True, default=None)
    extra = serializers.JSONField(required=False)
    created = StrictCharField(read_only=True)
    rows = MessageInput(many=True, required=False, allow_null=True, min_length=1, max_length=2)


def test_every_supported_option_answers_as_drf_does():
    assert fast_plan(Everything) is not None
    assert assert_same_answer(Everything, {})
    assert validated(Everything, {}) == {"mode": "auto", "count": 3, "flag": None}
    values = {
        "label": [*STRINGS, "a", "ab", "abcde", "abcdef", " a ", " ab "],
        "exact": [*STRINGS, " a", "a"],
        "mode": STRINGS,
        "ratio": [*NUMBERS, -1.5, -1.6, 2, 2.0, 2.1],
        "count": [*NUMBERS, 10, 10.0, 11, 9.5],
        "flag": BOOLEANS,
        "extra": CONTENTS,
        "created": ["read only: ignored", 42],
        "rows": [
            *MESSAGE_LISTS,
            [{"role": "a"}, {"role": "b"}],
            [{"role": "a"}, {"role": "b"}, {"role": "c"}],
        ],
    }
    fast = 0
    for name, pool in values.items():
        for value in pool:
            fast += assert_same_answer(Everything, _body(**{name: value}))
    assert fast > 50


def test_the_plan_is_built_once_per_class(monkeypatch):
    class Once(BoundOnceSerializer):
        name = StrictCharField()
        count = StrictIntegerField(required=False)

    compiled = []
    compile_serializer = input_serializers._compile_serializer

    def counting(serializer):
        compiled.append(type(serializer))
        return compile_serializer(serializer)

    monkeypatch.setattr(input_serializers, "_compile_serializer", counting)

    for data in ({"name": "a"}, {"name": "b", "count": 2.0}, {"name": 1}, {"name": "c"}):
        assert_same_answer(Once, data)

    assert compiled == [Once]
    assert fast_plan(Once) is Once.__dict__[input_serializers._PLAN_ATTRIBUTE]


def test_a_subclass_gets_its_own_plan_not_its_parents():
    fast_plan(ModelRequestInput)

    assert fast_plan(ChatInput) is not fast_plan(ModelRequestInput)
    with pytest.raises(ValidationError) as raised:
        validated(ChatInput, {"model": "m"})
    assert raised.value.detail == {"messages": ["This field is required."]}


def test_a_class_with_no_plan_is_asked_once_too(monkeypatch):
    class Coercing(BoundOnceSerializer):
        name = serializers.CharField()

    calls = []
    compile_serializer = input_serializers._compile_serializer
    monkeypatch.setattr(input_serializers, "_compile_serializer", lambda s: calls.append(s) or compile_serializer(s))

    assert validated(Coercing, {"name": 1}) == validated(Coercing, {"name": 2}) | {"name": "1"}
    assert len(calls) == 1


def test_json_content_is_checked_as_drf_checks_it():
    # DRF's json.dumps refuses NaN (allow_nan=False), unlike the standard library's, and takes int keys.
    nan = {"model": "m", "messages": [{"role": "user", "content": {"n": float("nan")}}]}
    int_keys = {"model": "m", "messages": [{"role": "user", "content": {1: "x"}}]}

    assert not assert_same_answer(ChatInput, nan)
    with pytest.raises(ValidationError) as raised:
        validated(ChatInput, nan)
    assert raised.value.detail == {"messages": {0: {"content": ["Value must be valid JSON."]}}}
    assert assert_same_answer(ChatInput, int_keys)
    assert json.dumps(validated(ChatInput, int_keys)["messages"][0]["content"]) == '{"1": "x"}'
