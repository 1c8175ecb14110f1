"""Render a worker's request from its stored template and one request's values.

The template is walked structurally, through objects and lists at any depth:

* a string that is exactly one placeholder becomes the typed value (``"{MODEL_TEMPERATURE}"``
  becomes the number ``0.7``, not the string ``"0.7"``);
* a placeholder inside a longer string is replaced as text;
* a placeholder whose value was not given (no temperature in the request) drops the key or
  list item it stands alone in, so the upstream's default applies, and is replaced by the empty
  string inside longer text.

A placeholder may carry a default after a bar, used when the request gives no value:
``"{MAX_TOKENS|1024}"`` becomes the request's max_tokens, or the number 1024 (a default that
parses as JSON keeps its JSON type; any other text is a string). Chat APIs that demand a value
(Anthropic's ``max_tokens``) need this.

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
# The whole chat as a JSON list of {"role", "content"} objects, as an OpenAI client sent it.
MESSAGES = "MESSAGES"
# The same without the system messages, and those messages' text on its own: the split that
# Anthropic's messages API wants.
NON_SYSTEM_MESSAGES = "NON_SYSTEM_MESSAGES"
SYSTEM_PROMPT = "SYSTEM_PROMPT"
MAX_TOKENS = "MAX_TOKENS"
# A job's submission (inference.protocols.job): what the client asked for, and the gateway's id
# of the job (some APIs take a client id to tag it with).
SIZE = "SIZE"
WIDTH = "WIDTH"
HEIGHT = "HEIGHT"
SECONDS = "SECONDS"
INPUT_REFERENCE = "INPUT_REFERENCE"
JOB_ID = "JOB_ID"
JOB_PLACEHOLDERS = (SIZE, WIDTH, HEIGHT, SECONDS, INPUT_REFERENCE, JOB_ID)
PLACEHOLDERS = (
    USER_PROMPT,
    MODEL_TEMPERATURE,
    MODEL_NAME,
    MESSAGES,
    NON_SYSTEM_MESSAGES,
    SYSTEM_PROMPT,
    MAX_TOKENS,
    *JOB_PLACEHOLDERS,
)
# Placeholders that carry what the user asked: a template needs at least one of them.
PROMPT_PLACEHOLDERS = (USER_PROMPT, MESSAGES, NON_SYSTEM_MESSAGES)

_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")(?:\|([^{}|]*))?\}")
_OMIT = object()


def render_body(template: Any, values: dict[str, Any]) -> Any:
    """Return a new JSON value: ``template`` with placeholders replaced from ``values``.

    A placeholder missing from ``values`` counts as not given.
    """
    rendered = _render_node(template, values)
    return None if rendered is _OMIT else rendered


def render_url(template: str, values: dict[str, Any]) -> str:
    """Replace placeholders in a URL template, percent-encoding each value as one URL part."""
    return _PLACEHOLDER.sub(lambda m: quote(_as_text(_value_or_default(m, values)), safe=""), template)


def mentions(template: Any, name: str) -> bool:
    """Whether the placeholder ``{name}`` (with or without a default) appears in any string of ``template``."""
    if isinstance(template, str):
        return any(match.group(1) == name for match in _PLACEHOLDER.finditer(template))
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
        value = _value_or_default(whole, values)
        return value if value is not None else _OMIT
    if "{" not in text:
        return text
    return _PLACEHOLDER.sub(lambda m: _as_text(_value_or_default(m, values)), text)


def _value_or_default(match: re.Match, values: dict[str, Any]) -> Any:
    value = values.get(match.group(1))
    default = match.group(2)
    if value is not None or default is None:
        return value
    try:
        return json.loads(default)
    except ValueError:
        return default


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def message_text(content: Any) -> str:
    """The text of one chat message's ``content``: a string, or OpenAI's list of parts, whose
    text parts are joined (image and audio parts have no text to give a text-only template)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def chat_values(messages: list[dict]) -> dict[str, Any]:
    """The chat placeholders' values for one message list."""
    system = [message for message in messages if message.get("role") in ("system", "developer")]
    user = [message for message in messages if message.get("role") == "user"]
    return {
        MESSAGES: messages,
        NON_SYSTEM_MESSAGES: [message for message in messages if message not in system],
        SYSTEM_PROMPT: "\n\n".join(message_text(message.get("content")) for message in system) or None,
        USER_PROMPT: message_text(user[-1].get("content")) if user else "",
    }
