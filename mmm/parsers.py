"""The API's JSON parser: a body the gateway cannot carry on is a 400 saying why and where.

DRF's own parser lets three things through to a 500 further on: nesting deep enough to exhaust
Python's recursion (json's C scanner raises RecursionError), strings holding a lone UTF-16
surrogate (``"\\ud800"`` is valid JSON but no UTF-8 can carry it to an upstream, a log or the
database), and undecodable bytes (reported without saying where).
"""

import json
import re

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from mmm import json_codec

# Chat messages, tools and JSON schemas nest a dozen levels; 64 leaves room for any real
# request and stops far below the recursion limit of everything that walks the body later.
MAX_DEPTH = 64

_SURROGATE = re.compile("[\ud800-\udfff]")


class StrictJSONParser(JSONParser):
    # A JSONParser, so DRF reads the body through request.body, which enforces
    # DATA_UPLOAD_MAX_MEMORY_SIZE (MMM_MAX_REQUEST_BYTES); other parsers get the raw stream.

    def parse(self, stream, media_type=None, parser_context=None):
        return parse_json_body(stream.read() if stream is not None else b"")


def parse_json_body(raw: bytes):
    """The JSON value in ``raw`` (UTF-8), or a ParseError naming the problem and its place."""
    parsed, value = json_codec.fast_loads(raw)
    if parsed:
        # orjson read valid UTF-8, so no string holds a lone surrogate; nesting cannot be deeper
        # than the brackets that open it (counted in C; the walk only where there are more).
        if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH:
            _check(value)
        return value
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(
            f"JSON parse error - the body is not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start}"
        ) from None
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ParseError(f"JSON parse error - nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise ParseError(f"JSON parse error - {exc}") from None
    _check(value)
    return value


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _check(value) -> None:
    """Walk ``value`` without recursion: refuse nesting past MAX_DEPTH and lone surrogates."""
    pending = [(value, "$", 0)]
    while pending:
        node, where, depth = pending.pop()
        if isinstance(node, str):
            _refuse_surrogate(node, where)
            continue
        if not isinstance(node, (dict, list)):
            continue
        if depth >= MAX_DEPTH:
            raise ParseError(f"JSON parse error - nested deeper than {MAX_DEPTH} levels at {where}")
        if isinstance(node, dict):
            for key, item in node.items():
                _refuse_surrogate(key, f"{where} (a key)")
                pending.append((item, f"{where}.{key[:40]}", depth + 1))
        else:
            pending.extend((item, f"{where}[{index}]", depth + 1) for index, item in enumerate(node))


def _refuse_surrogate(text: str, where: str) -> None:
    found = _SURROGATE.search(text)
    if found:
        raise ParseError(
            f"JSON parse error - lone surrogate \\u{ord(found.group()):04x} in the string at {where}: "
            "it is not a character and cannot be sent on as UTF-8"
        )
