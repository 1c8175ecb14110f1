"""Validation of ingress request bodies by hand: cheap on the hot path (no serializer fields
copied per request) and precise in its 400s, which name the field as a path
(``messages[2].content[0].source.type``)."""

from typing import Any

from rest_framework.exceptions import ValidationError

from mmm.jsontypes import json_kind


class BadRequest(ValidationError):
    """A 400 that names where the problem is; the project's handler shapes it like any other."""

    def __init__(self, where: str, what: str):
        super().__init__({where: [what]})
        self.where, self.what = where, what


def at(where: str, key: str | int) -> str:
    """The path of a child: ``at("messages", 2)`` is ``messages[2]``, ``at("messages[2]", "role")``
    is ``messages[2].role``."""
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


def a_dict(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise BadRequest(where, f"must be an object, not {json_kind(value)}")
    return value


def a_list(value: Any, where: str, *, allow_empty: bool = True) -> list:
    if not isinstance(value, list):
        raise BadRequest(where, f"must be a list, not {json_kind(value)}")
    if not value and not allow_empty:
        raise BadRequest(where, "must not be empty")
    return value


def a_string(value: Any, where: str, *, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise BadRequest(where, f"must be a string, not {json_kind(value)}")
    if not value and not allow_empty:
        raise BadRequest(where, "must not be empty")
    return value


def a_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(where, f"must be true or false, not {json_kind(value)}")
    return value


def a_number(value: Any, where: str, *, minimum: float | None = None, maximum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise BadRequest(where, f"must be a number, not {json_kind(value)}")
    if minimum is not None and value < minimum:
        raise BadRequest(where, f"must be at least {minimum:g}")
    if maximum is not None and value > maximum:
        raise BadRequest(where, f"must be at most {maximum:g}")
    return value


def a_whole_number(value: Any, where: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(where, f"must be a whole number, not {json_kind(value)}")
    if value < minimum:
        raise BadRequest(where, f"must be at least {minimum}")
    return value


def one_of(value: Any, where: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise BadRequest(where, f"must be one of {', '.join(repr(choice) for choice in choices)}, not {value!r}"[:300])
    return value


def required(body: dict, name: str, where: str = "") -> Any:
    """``body[name]``, or a 400 saying it is missing."""
    value = body.get(name)
    if value is None:
        raise BadRequest(at(where, name), "is required")
    return value


def optional_string(body: dict, name: str) -> str | None:
    return None if body.get(name) is None else a_string(body[name], name)
