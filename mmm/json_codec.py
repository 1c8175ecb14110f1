"""JSON on the request path through orjson, with the standard library's answers.

A completion parses the client's body, writes the upstream's, and parses the upstream's answer:
the standard library took 5–10 µs of CPU for that (``bench.per_request_costs``), 2.6% of the
samples of a proxied completion at c=32; orjson does the same work in
a tenth of it. Where the two would answer differently, the standard library answers:

- orjson reads an integer past 64 bits as a float; the standard library keeps it exact. A body
  with a run of 19 or more digits (in a number or not) is read by the standard library.
- orjson refuses what the standard library reads (``NaN``, ``Infinity``, a number past a
  double's range, a byte-order mark, UTF-16 or UTF-32, a lone surrogate): then the standard
  library reads it, and its error, when there is one, is the one a client has always seen.
- orjson writes no integer past 64 bits, no key that is not a string, and (as asked here) no
  datetime or dataclass: the standard library writes those, or raises as it did.

What differs, on purpose: ``dumps`` writes compact JSON (no space after ``,`` and ``:``), as DRF's
renderer does, and a float that is not finite as ``null``, where the standard library wrote
``NaN`` or ``Infinity``, which are not JSON and which an upstream would refuse.
"""

import json
import re
from typing import Any

import orjson

# A digit run long enough to be an integer orjson would turn into a float (|n| >= 2**63 has 19).
_LONG_DIGITS = re.compile(rb"\d{19,}")
# Types orjson would write its own way; raising hands them to the standard library.
_STANDARD_TYPES_ONLY = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def fast_loads(raw: bytes) -> tuple[bool, Any]:
    """(True, the value) when orjson reads ``raw`` as the standard library would, else (False, None)."""
    if _LONG_DIGITS.search(raw):
        return False, None
    try:
        return True, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False, None


def loads(raw: bytes) -> Any:
    """``json.loads(raw)``: its value, or its ValueError."""
    parsed, value = fast_loads(raw)
    return value if parsed else json.loads(raw)


def dumps(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON (see the module's docstring)."""
    try:
        return orjson.dumps(value, option=_STANDARD_TYPES_ONLY)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
