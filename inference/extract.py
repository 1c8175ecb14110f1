"""The ``response_extract`` path language: where in an upstream's JSON the answer sits.

``data.items[].attributes.answer`` reads ``response["data"]["items"][0]["attributes"]["answer"]``
as the seed document defines it; ``[N]`` takes item N and ``[-1]`` the last one; an empty
path returns the whole response. A path is parsed once, when the worker is registered or
loaded, into steps; applying it names the exact step that did not match.
"""

import re
from dataclasses import dataclass
from typing import Any

from mmm.jsontypes import json_kind

_SEGMENT = re.compile(r"(?P<key>[^.\[\]]*)(?P<indexes>(?:\[-?\d*\])*)")
_INDEX = re.compile(r"\[(-?\d*)\]")


class PathSyntaxError(ValueError):
    """The path cannot be parsed; the message says where."""


class PathMismatch(LookupError):
    """The response has no value where the path points."""

    def __init__(self, *, path: str, at: str, reason: str):
        self.path, self.at, self.reason = path, at, reason
        super().__init__(f"response_extract {path!r} failed at {at!r}: {reason}")


@dataclass(frozen=True)
class Step:
    key: str | int  # a str looks up an object's key, an int indexes a list
    shown: str  # the path up to and including this step, for error messages


def parse_path(path: str) -> tuple[Step, ...]:
    """Parse ``path`` into steps, or raise PathSyntaxError saying what is wrong and where."""
    if path == "":
        return ()
    steps: list[Step] = []
    shown = ""
    for position, segment in enumerate(path.split(".")):
        match = _SEGMENT.fullmatch(segment)
        if not match:
            raise PathSyntaxError(f"segment {position + 1} ({segment!r}) is not a key optionally followed by [N] or []")
        key, indexes = match.group("key"), match.group("indexes")
        if not key and not indexes:
            raise PathSyntaxError(f"segment {position + 1} is empty (two dots in a row, or a dot at an end)")
        if key:
            shown = f"{shown}.{key}" if shown else key
            steps.append(Step(key, shown))
        for index_text in _INDEX.findall(indexes):
            if index_text in ("", "-"):
                if index_text == "-":
                    raise PathSyntaxError(f"segment {position + 1} ({segment!r}) has '[-]' without a number")
                index = 0  # the seed's a.b[].c means the first item
            else:
                index = int(index_text)
            shown = f"{shown}[{index}]"
            steps.append(Step(index, shown))
    return tuple(steps)


def apply_path(document: Any, steps: tuple[Step, ...], *, path: str) -> Any:
    """Follow ``steps`` into ``document``; raise PathMismatch naming the step that failed."""
    value = document
    for step in steps:
        if isinstance(step.key, int):
            if not isinstance(value, list):
                raise PathMismatch(path=path, at=step.shown, reason=f"expected a list, found {json_kind(value)}")
            if not -len(value) <= step.key < len(value):
                raise PathMismatch(path=path, at=step.shown, reason=f"index out of range (list has {len(value)} items)")
            value = value[step.key]
        else:
            if not isinstance(value, dict):
                raise PathMismatch(path=path, at=step.shown, reason=f"expected an object, found {json_kind(value)}")
            if step.key not in value:
                keys = ", ".join(sorted(map(str, value))[:10]) or "none"
                raise PathMismatch(path=path, at=step.shown, reason=f"no key {step.key!r} (keys: {keys})")
            value = value[step.key]
    return value
