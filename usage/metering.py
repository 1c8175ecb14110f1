"""How many tokens a request used: the upstream's own counts when it reports them, else an
estimate, marked as one.

The estimate is one token per four characters (rounded up), OpenAI's published rule of thumb
for English text. tiktoken's encodings are not used: tiktoken downloads its BPE files on first
use, which a gateway without outside network cannot do, and no package on PyPI ships them for
it. A stream counts what was relayed to the client: the upstream's usage chunk when it sent
one, else the text of the chunks that went out, so a stream cut early is never billed in full.
"""

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

CHARS_PER_TOKEN = 4
# Fields whose strings are the text a model reads or writes, in every request shape we serve.
_TEXT_FIELDS = frozenset({"content", "text", "input", "prompt", "instructions", "system", "arguments"})


@dataclass(frozen=True)
class Tokens:
    input: int = 0  # cached included, as OpenAI counts prompt_tokens
    output: int = 0
    cached: int = 0
    estimated: bool = False

    @property
    def total(self) -> int:
        return self.input + self.output


def estimate_tokens(text_chars: int) -> int:
    return math.ceil(text_chars / CHARS_PER_TOKEN) if text_chars > 0 else 0


def text_chars(document: Any) -> int:
    """Characters of model-readable text in a request body (message contents, prompts, inputs)."""
    total = 0
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            for name, item in value.items():
                if isinstance(item, str):
                    if name in _TEXT_FIELDS:
                        total += len(item)
                elif isinstance(item, (dict, list)):
                    stack.append(item)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, str):
                    total += len(item)  # "input": ["a", "b"], "prompt": [...]
                elif isinstance(item, (dict, list)):
                    stack.append(item)
    return total


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def reported(usage: Any) -> Tokens | None:
    """The upstream's usage in OpenAI's names (what every protocol hands back), or None."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not isinstance(prompt, int) and not isinstance(completion, int):
        return None
    details = usage.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return Tokens(input=_count(prompt), output=_count(completion), cached=cached)


def _choice_chars(document: dict) -> int:
    total = 0
    for choice in document.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        for part in (choice.get("delta"), choice.get("message")):
            if isinstance(part, dict):
                total += text_chars(part)
                reasoning = part.get("reasoning_content")
                total += len(reasoning) if isinstance(reasoning, str) else 0
        text = choice.get("text")
        total += len(text) if isinstance(text, str) else 0
    return total


def answer_output_chars(body: bytes) -> int:
    """Characters of generated text in a whole OpenAI-shaped answer."""
    try:
        document = json.loads(body)
    except ValueError:
        return 0
    return _choice_chars(document) if isinstance(document, dict) else 0


class StreamMeter:
    """Counts what goes out of an OpenAI-shaped event stream as it is relayed."""

    def __init__(self) -> None:
        self.chars = 0
        self.usage: Tokens | None = None
        self._rest = b""

    def feed(self, chunk: bytes) -> None:
        data = self._rest + chunk
        cut = data.rfind(b"\n\n")
        if cut < 0:
            self._rest = data
            return
        self._rest = data[cut + 2 :]
        for event in data[:cut].split(b"\n\n"):
            for line in event.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if not payload.startswith(b"{"):
                    continue
                try:
                    document = json.loads(payload)
                except ValueError:
                    continue
                if not isinstance(document, dict):
                    continue
                self.usage = reported(document.get("usage")) or self.usage
                self.chars += _choice_chars(document)

    def tokens(self, *, input_estimate: int) -> Tokens:
        if self.usage is not None:
            return self.usage
        return Tokens(input=input_estimate, output=estimate_tokens(self.chars), estimated=True)


class MeteredStream:
    """A response's stream, passed on unchanged, with a StreamMeter watching each chunk.

    Keeps the stream's ``on_end`` and ``close``: the request log and the router settle through
    them, and the WSGI server closes this object when the client has gone.
    """

    def __init__(self, stream: Iterator[bytes], meter: StreamMeter):
        self._stream = stream
        self._iterator = iter(stream)
        self.meter = meter

    def on_end(self, observer: Callable) -> None:
        self._stream.on_end(observer)

    def __iter__(self) -> "MeteredStream":
        return self

    def __next__(self) -> bytes:
        chunk = next(self._iterator)
        self.meter.feed(chunk)
        return chunk

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()
