"""Naming JSON values' types the way error messages speak of them."""

from typing import Any


def json_kind(value: Any) -> str:
    """'a string', 'an object', 'null', ...: for messages like 'expected a list, found a string'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
