"""Render a worker's request from its stored template and one request's values.

The template is walked structurally, through objects and lists at any depth:

* a string that is exactly one placeholder becomes the typed value (``"{MODEL_TEMPERATURE}"``
  becomes the number ``0.7``, not the string ``"0.7"``);
* a placeholder inside a longer string is replaced as text;
* a placeholder whose value was not given (no temperature in the request) drops the key or
  list item it stands alone in, so the upstream's default applies, and is replaced by the empty
  string inside longer text.

Substitution is one pass with ``re.sub``: text that came from the user is never scanned again,
so a prompt containing ``{MODEL_NAME}`` reaches the upstream unchanged. The template itself is
never modified: every call builds new containers.
"""

import json
import re
from typing import Any
from urllib.parse import quote

USER_PROMPT = "USER_PROMPT"
MODEL_TEMPERATURE = "MODEL_TEMPERATURE"
MODEL_NAME = "MODEL_NAME"
PLACEHOLDERS = (USER_PROMPT, MODEL_TEMPERATURE, MODEL_NAME)

_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
_OMIT = object()


def render_body(template: Any, values: dict[str, Any]) -> Any:
    """Return a new JSON value: ``template`` with placeholders replaced from ``values``.

    A placeholder missing from ``values`` counts as not given.
    """
    rendered = _render_node(template, values)
    return None if rendered is _OMIT else rendered


def render_url(template: str, values: dict[str, Any]) -> str:
    """Replace placeholders in a URL template, percent-encoding each value as one URL part."""
    return _PLACEHOLDER.sub(lambda m: quote(_as_text(values.get(m.group(1))), safe=""), template)


def mentions(template: Any, name: str) -> bool:
    """Whether the placeholder ``{name}`` appears in any string of ``template``."""
    token = "{" + name + "}"
    if isinstance(template, str):
        return token in template
    if isinstance(template, dict):
        return any(mentions(value, name) for value in template.values())
    if isinstance(template, list):
        return any(mentions(item, name) for item in template)
    return False


def _render_node(node: Any, values: dict[str, Any]) -> Any:
    if isinstance(node, str):
        return _render_string(node, values)
    if isinstance(node, dict):
        rendered_dict = {}
        for key, child in node.items():
            rendered = _render_node(child, values)
            if rendered is not _OMIT:
                rendered_dict[key] = rendered
        return rendered_dict
    if isinstance(node, list):
        return [rendered for child in node if (rendered := _render_node(child, values)) is not _OMIT]
    return node


def _render_string(text: str, values: dict[str, Any]) -> Any:
    whole = _PLACEHOLDER.fullmatch(text)
    if whole:
        name = whole.group(1)
        return values[name] if values.get(name) is not None else _OMIT
    if "{" not in text:
        return text
    return _PLACEHOLDER.sub(lambda m: _as_text(values.get(m.group(1))), text)


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
