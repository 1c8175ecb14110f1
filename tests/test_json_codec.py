"""mmm.json_codec: orjson on the request path, answering as the standard library does."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ParseError

from mmm import json_codec
from mmm.parsers import MAX_DEPTH, parse_json_body


def typed(value):
    """``value`` with each number's type kept, so 1 and 1.0 compare unequal (and -0.0 and 0.0)."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, value)


def stdlib_answer(raw: bytes):
    try:
        return "value", typed(json.loads(raw))
    except ValueError as exc:
        return "error", type(exc).__name__


def codec_answer(raw: bytes):
    try:
        return "value", typed(json_codec.loads(raw))
    except ValueError as exc:
        return "error", type(exc).__name__


EDGES = [
    b"-0",
    b"-0.0",
    b"1e400",
    b"-1e400",
    b"NaN",
    b"[Infinity]",
    b"9223372036854775807",
    b"9223372036854775808",
    b"18446744073709551616",
    b"-9223372036854775809",
    b'{"seed": 123456789012345678901234567890}',
    b'{"text": "call 1234567890123456789012 now"}',
    b"1.00000000000000011102230246251565404236316680908203125",
    b'"\\u0000"',
    b'"\\ud800"',
    b'"\\ud83d\\ude00"',
    b'{"a":1,"a":2}',
    b"\xef\xbb\xbf{}",
    '{"a": "ü"}'.encode("utf-16"),
    b'"\xed\xa0\x80"',  # a surrogate encoded in UTF-8 (CESU)
    b"\xff",
    b'"\t"',
    b"[1,]",
    b"01",
    b".5",
    b"",
    b' {"a" : [1 , 2 ] } ',
]


@pytest.mark.parametrize("raw", EDGES)
def test_edge_inputs_read_as_the_standard_library_reads_them(raw):
    assert codec_answer(raw) == stdlib_answer(raw)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from([{}, {"ensure_ascii": False}, {"indent": 1}]))
def test_any_json_text_reads_as_the_standard_library_reads_it(value, style):
    raw = json.dumps(value, **style).encode("utf-8")
    assert codec_answer(raw) == stdlib_answer(raw)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_what_it_writes_reads_back_as_the_same_value(value):
    written = json_codec.dumps(value)
    assert isinstance(written, bytes)
    assert typed(json.loads(written)) == typed(value)


def test_what_orjson_will_not_write_the_standard_library_writes():
    assert json.loads(json_codec.dumps({"big": 2**70, 3: "int key"})) == {"big": 2**70, "3": "int key"}
    with pytest.raises(TypeError):  # as json.dumps raises: not orjson's datetime text
        json_codec.dumps({"when": __import__("datetime").datetime(2026, 1, 1)})


def test_it_writes_compact_json_and_no_ascii_escapes():
    assert json_codec.dumps({"a": [1, 2.5], "b": "ü"}) == '{"a":[1,2.5],"b":"ü"}'.encode()


def test_a_float_that_is_not_finite_is_written_as_null():
    assert json.loads(json_codec.dumps([math.inf, -math.inf, math.nan])) == [None, None, None]


# --- The strict body parser on both paths ---------------------------------------------------


def parse_answer(raw: bytes):
    try:
        return "value", typed(parse_json_body(raw))
    except ParseError as exc:
        return "error", str(exc.detail)


def stdlib_parse_answer(raw: bytes, monkeypatch):
    with monkeypatch.context() as patched:
        patched.setattr(json_codec, "fast_loads", lambda raw: (False, None))
        return parse_answer(raw)


BODIES = [
    b'{"model_name": "m", "input": "hi"}',
    b'{"seed": 123456789012345678901234567890, "input": "x"}',
    b'{"input": "\\ud800"}',
    b'{"\\ud83d": 1}',
    b'{"input": "\\ud83d\\ude00"}',
    b'{"input": NaN}',
    b'{"input": 1e400}',
    b"\xff\xfe",
    b'{"input": "caf\xc3\xa9"}',
    b"[" * MAX_DEPTH + b"]" * MAX_DEPTH,
    b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1),
    b'{"a": ' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1),
    b'{"tools": [' + b",".join([b'{"type": "function"}'] * 80) + b"]}",  # many brackets, shallow
    b"",
    b"{",
]


@pytest.mark.parametrize("raw", BODIES)
def test_the_parser_answers_alike_through_orjson_and_the_standard_library(raw, monkeypatch):
    assert parse_answer(raw) == stdlib_parse_answer(raw, monkeypatch)


def test_the_fast_path_is_taken_for_an_ordinary_body(monkeypatch):
    calls = []
    monkeypatch.setattr(json, "loads", lambda *args, **kwargs: calls.append(args))
    assert parse_json_body(b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}')["model"] == "m"
    assert calls == []
