"""What a request tells the prefix_aware strategy: the hashes of its prompt's leading blocks and
its session key.

An engine keeps the KV cache of prompts it has seen in fixed-size blocks (vLLM's automatic
prefix caching, SGLang's radix tree), and reuses a block only when everything before it is the
same. So the prompt is rendered in the order an engine's chat template puts it (the leading
system messages, the tools, then the messages in turn), cut into blocks of
MMM_PREFIX_BLOCK_CHARS characters, and each block's hash covers the hash of the block before it:
two prompts share their first n hashes exactly when they share their first n blocks. Only full
blocks count, as in the engines. ``xxhash`` because Python's ``hash()`` is salted per process,
and the tables are shared by every process and host (inference.routing_state).

Everything here is computed when a strategy first asks for it, so other strategies pay nothing.
"""

import json
from functools import cached_property

import xxhash
from django.conf import settings

# The client's X-Session-ID (its session key), as the WSGI environ holds it: read from there,
# since request.headers would parse every header of the request to find it.
SESSION_META_KEY = "HTTP_X_SESSION_ID"

# Leading messages of these roles are the system prompt; tools come right after them.
_SYSTEM_ROLES = ("system", "developer")


class RoutingHints:
    """What one request offers the strategies beyond its model name."""

    def __init__(self, *, render=lambda: "", session_key: str | None = None):
        self._render = render
        self.session_key = session_key or None

    @cached_property
    def prefix_hashes(self) -> tuple[str, ...]:
        return block_hashes(self._render())

    @cached_property
    def session_hash(self) -> str | None:
        if self.session_key is None:
            return None
        return "s" + xxhash.xxh3_64_hexdigest(self.session_key.encode("utf-8", "surrogatepass"))


NO_HINTS = RoutingHints()


def block_hashes(text: str) -> tuple[str, ...]:
    """The chained hashes of ``text``'s full blocks, at most MMM_PREFIX_MAX_BLOCKS of them."""
    size = settings.MMM_PREFIX_BLOCK_CHARS
    count = min(len(text) // size, settings.MMM_PREFIX_MAX_BLOCKS)
    hashes = []
    previous = b""
    for index in range(count):
        block = text[index * size : (index + 1) * size].encode("utf-8", "surrogatepass")
        previous = xxhash.xxh3_64_digest(previous + block)
        hashes.append(previous.hex())
    return tuple(hashes)


def _part(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)


def render_chat(body: dict) -> str:
    """A chat request's prompt as an engine's template orders it: system prompt, tools, messages."""
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    lead = 0
    while lead < len(messages) and isinstance(messages[lead], dict) and messages[lead].get("role") in _SYSTEM_ROLES:
        lead += 1
    parts = [_message(message) for message in messages[:lead]]
    if body.get("tools"):
        parts.append("tools\n" + _part(body["tools"]))
    parts += [_message(message) for message in messages[lead:]]
    return "\n".join(parts)


def _message(message) -> str:
    if not isinstance(message, dict):
        return _part(message)
    rest = {key: value for key, value in message.items() if key not in ("role", "content")}
    text = f"{message.get('role', '')}\n{_part(message.get('content') or '')}"
    return text + ("\n" + _part(rest) if rest else "")


def _session_key(*, header: str | None, body: dict) -> str | None:
    """X-Session-ID, else the OpenAI ``prompt_cache_key``, else ``user``: what names a conversation."""
    if header:
        return header
    for field in ("prompt_cache_key", "user"):
        value = body.get(field)
        if isinstance(value, str) and value:
            return value
    return None


def chat_hints(*, body: dict, session_header: str | None = None) -> RoutingHints:
    return RoutingHints(render=lambda: render_chat(body), session_key=_session_key(header=session_header, body=body))


def prompt_hints(*, prompt, body: dict | None = None, session_header: str | None = None) -> RoutingHints:
    """A plain prompt's hints (the seed endpoint, /v1/completions)."""
    return RoutingHints(render=lambda: _part(prompt), session_key=_session_key(header=session_header, body=body or {}))
