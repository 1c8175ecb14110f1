"""Server-sent event streams: opened upstream, relayed to the client event by event.

How a stream may end, and what the client sees:

* the upstream finishes (``data: [DONE]``): the client gets every event, ``[DONE]`` last;
* the upstream breaks, stalls past its read timeout, runs past the stream deadline, or ends
  without ``[DONE]``: the events relayed so far, then one error event
  ``data: {"error": {"message", "type", "code": "stream_interrupted"}}`` and the end of the
  response, without ``[DONE]``. The OpenAI SDKs raise an APIError on that event, so a cut
  stream is never mistaken for a complete answer;
* the client goes away: the server's next write fails, the WSGI server closes this generator,
  and the upstream connection is closed at once, so the upstream stops generating.

Only whole events are relayed (an event cut in half by a broken upstream is dropped), so the
error event always arrives where a client's parser expects a new event. Each read of the
upstream waits at most the worker's timeout and never past the stream's total deadline, in
gevent and plain threads alike (the socket timeout is set before each read).
"""

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import urllib3
from django.conf import settings

from inference import upstream
from inference.outcomes import Outcome
from inference.upstream import UpstreamRequest

_CHUNK_BYTES = 64 * 1024
_EVENT_END = b"\n\n"
_DONE_LINES = (b"data: [DONE]", b"data:[DONE]")


def is_done_event(event: bytes) -> bool:
    return any(line.strip() in _DONE_LINES for line in event.split(b"\n"))


@dataclass(frozen=True)
class Framing:
    """How an upstream's stream is cut into events, and which event says it is complete."""

    separator: bytes
    is_last: Callable[[bytes], bool]
    last_name: str  # what the end is called, for the error when it never came


SSE_OPENAI = Framing(_EVENT_END, is_done_event, "[DONE]")


class StreamInterrupted(upstream.UpstreamError):
    """The upstream's stream ended before its ``[DONE]``."""


@dataclass(frozen=True)
class StreamDeadlines:
    read_timeout: float  # the longest wait for the next bytes
    deadline: float  # time.monotonic() by which the whole stream must be over

    @classmethod
    def starting_now(cls, *, read_timeout: float, total_timeout: float | None = None) -> "StreamDeadlines":
        total = total_timeout or settings.MMM_STREAM_MAX_SECONDS
        return cls(read_timeout=min(read_timeout, total), deadline=time.monotonic() + total)

    def seconds_left(self) -> float:
        return max(self.deadline - time.monotonic(), 0.0)

    def next_wait(self) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise upstream.UpstreamTimedOut("the stream ran past its deadline (MMM_STREAM_MAX_SECONDS)")
        return min(self.read_timeout, remaining)


class UpstreamEventStream:
    """An upstream response being read as server-sent events.

    ``open()`` returns once the status line and headers are in; ``next_events()`` returns the
    next complete events (one read's worth), an empty list at the end of the body.
    """

    def __init__(self, response: upstream.Response, deadlines: StreamDeadlines, framing: Framing = SSE_OPENAI):
        self.response = response
        self.deadlines = deadlines
        self.framing = framing
        self.saw_done = False
        self._buffer = b""
        self._ended = False

    @classmethod
    def open(
        cls,
        request: UpstreamRequest,
        *,
        deadlines: StreamDeadlines,
        pool: upstream.Pool | None = None,
        framing: Framing = SSE_OPENAI,
        accept: str = "text/event-stream",
    ) -> "UpstreamEventStream":
        """Send ``request``; raise an UpstreamError if no status line comes back in time."""
        pool = pool or upstream.shared_pool()
        headers = upstream.outbound_headers(request, accept=accept)
        wait = deadlines.next_wait()
        connect_timeout = min(settings.MMM_CONNECT_TIMEOUT, wait)
        with upstream.upstream_errors(timeout=wait, connect_timeout=connect_timeout):
            response = upstream.start_exchange(
                pool, request, headers=headers, connect_timeout=connect_timeout, timeout=wait
            )
        return cls(response, deadlines, framing)

    @property
    def status(self) -> int:
        return self.response.status

    @property
    def is_event_stream(self) -> bool:
        return self.response.headers.get("Content-Type", "").startswith("text/event-stream")

    @property
    def content_type(self) -> str:
        return self.response.headers.get("Content-Type", "")

    def read_whole(self) -> upstream.UpstreamResponse:
        """The whole body at once, for an answer that is not a stream (an error, or a server
        that ignored ``stream: true``)."""
        started = time.monotonic()
        try:
            content = upstream.read_body(
                self.response, deadline=self.deadlines.deadline, max_bytes=settings.MMM_MAX_RESPONSE_BYTES
            )
        except urllib3.exceptions.ReadTimeoutError:
            raise upstream.UpstreamTimedOut("the answer did not arrive in time") from None
        self._ended = True
        return upstream.UpstreamResponse(
            status=self.status,
            content=content,
            content_type=self.response.headers.get("Content-Type", ""),
            seconds=time.monotonic() - started,
        )

    def next_events(self) -> list[bytes]:
        """Read until at least one whole event is in; [] once the body has ended cleanly.

        Raises UpstreamTimedOut, UpstreamUnreachable (the connection broke) or
        StreamInterrupted (the body ended inside an event, or without its last event).
        """
        separator = self.framing.separator
        while True:
            cut = self._buffer.rfind(separator)
            if cut >= 0:
                end = cut + len(separator)
                complete, self._buffer = self._buffer[:end], self._buffer[end:]
                events = [event + separator for event in complete.split(separator) if event.strip()]
                if events:
                    self.saw_done = self.saw_done or any(self.framing.is_last(event) for event in events)
                    return events
            chunk = self._read_some()
            if not chunk:
                self._ended = True
                if self._buffer.strip():
                    raise StreamInterrupted("the upstream's stream ended in the middle of an event")
                if not self.saw_done:
                    raise StreamInterrupted(f"the upstream's stream ended without {self.framing.last_name}")
                return []
            # SSE lines may end in CRLF; one form makes event boundaries easy to find. A CR left at
            # the end of the buffer meets its LF in the next read's replace.
            self._buffer = (self._buffer + chunk).replace(b"\r\n", b"\n")

    def close(self) -> None:
        """Give the connection back to the pool if the body was read to its end, else close it:
        a half-read connection cannot be reused, and closing it tells the upstream to stop."""
        if self._ended:
            self.response.release_conn()
        self.response.close()

    def _read_some(self) -> bytes:
        wait = self.deadlines.next_wait()
        sock = getattr(self.response.connection, "sock", None)
        if sock is not None:
            sock.settimeout(wait)
        try:
            return self.response.read1(_CHUNK_BYTES, decode_content=True)
        except urllib3.exceptions.ReadTimeoutError:
            raise upstream.UpstreamTimedOut(f"the upstream sent nothing for {wait:g} s") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise upstream.UpstreamUnreachable(f"the upstream's stream broke ({type(exc).__name__})") from None


def error_event(*, message: str, code: str = "stream_interrupted", error_type: str = "upstream_error") -> bytes:
    """An SSE event in the OpenAI error shape, which the SDKs raise as an APIError."""
    body = {"error": {"message": message, "type": error_type, "code": code, "param": None}}
    return b"data: " + json.dumps(body).encode() + _EVENT_END


DONE_EVENT = b"data: [DONE]" + _EVENT_END


def sse_event(document: dict) -> bytes:
    return b"data: " + json.dumps(document, ensure_ascii=False).encode("utf-8") + _EVENT_END


class StreamTranslator:
    """Turns one upstream's stream events into OpenAI ``chat.completion.chunk`` events.

    ``feed`` is given each whole upstream event as it arrives and returns the SSE bytes to send
    (possibly none); ``finish`` those that follow once the upstream's stream has ended
    cleanly (the usage chunk, ``[DONE]``). Either raises StreamInterrupted for an upstream
    that reports an error inside its stream.
    """

    def feed(self, event: bytes) -> bytes:
        raise NotImplementedError

    def finish(self) -> bytes:
        return DONE_EVENT


def relay(
    stream: UpstreamEventStream,
    *,
    first_events: list[bytes],
    on_end: Callable[[str, str], None],
    translator: StreamTranslator | None = None,
) -> Iterator[bytes]:
    """Yield ``first_events`` and then the rest of ``stream`` as it arrives, each read's events
    translated by ``translator`` when there is one (else passed on as they came).

    ``on_end(outcome, error)`` (an outcomes.Outcome) is called exactly once, however the
    stream ends, after the upstream connection is closed or released.
    """
    outcome, error = Outcome.CLIENT_GONE, ""
    try:
        events = first_events
        while events:
            if translator is None:
                yield b"".join(events)
            else:
                chunk = b"".join([translator.feed(event) for event in events])
                if chunk:
                    yield chunk
            events = stream.next_events()
        if translator is not None:
            yield translator.finish()
        outcome = Outcome.OK
    except upstream.UpstreamError as exc:
        outcome, error = Outcome.INTERRUPTED, str(exc)
        yield error_event(message=f"the model's stream was cut off: {exc}")
    finally:
        # Reached on GeneratorExit too: the WSGI server closes this generator when the client
        # has gone, and closing the upstream connection here makes the upstream stop at once.
        stream.close()
        on_end(outcome, error)
