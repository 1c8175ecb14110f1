"""A fake model server that costs almost no CPU: raw HTTP/1.1 with keep-alive on asyncio.

It shares two cores with the gateway and the load generator, so it parses only what the
benchmark sends. Every POST answers ``{"data":{"items":[{"attributes":{"answer": <input>}}]}}``
after the delay configured for its path; the delay is an asyncio sleep, so hundreds of slow
requests wait at once without a thread each.

``--stream /v1/chat/completions=20:2`` makes a path answer as an OpenAI-compatible server
streaming a chat completion: 20 ``chat.completion.chunk`` events spread over 2 s (the first at
once), then ``data: [DONE]``, in HTTP chunked encoding. ``--chat /v1/chat/completions=3:0.05``
makes a path answer as an OpenAI-compatible server both ways: a whole ``chat.completion`` at
once, or, when the request's body says ``"stream": true``, a stream of that shape.

Run as ``python -m bench.upstream --fd N /fast=0 /slow=1``: the parent binds and listens on
the socket and passes it down, so its port is known and connectable before this starts.
"""

import argparse
import asyncio
import http
import json
import socket

OTLP_TRACES_PATH = "/v1/traces"


def parse_delays(specs: list[str]) -> dict[str, float]:
    """``["/fast=0", "/slow=1.5"]`` -> ``{"/fast": 0.0, "/slow": 1.5}``."""
    delays = {}
    for spec in specs:
        path, _, seconds = spec.partition("=")
        delays[path] = float(seconds)
    return delays


def response_bytes(status: int, document: object) -> bytes:
    body = json.dumps(document).encode()
    head = (
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def answer(method: str, path: str, body: bytes, delays: dict[str, float]) -> tuple[int, object, float]:
    """(status, JSON document, seconds to wait before answering) for one request."""
    if path == OTLP_TRACES_PATH:
        return 200, {}, 0.0  # bench.tracing's spans: received, not read
    if path not in delays:
        return 404, {"error": f"no route {path}"}, 0.0
    if method != "POST":
        return 405, {"error": "POST only"}, 0.0
    try:
        prompt = json.loads(body)["input"]
    except (ValueError, KeyError, TypeError):
        return 400, {"error": 'body must be JSON with an "input"'}, 0.0
    return 200, {"data": {"items": [{"attributes": {"answer": prompt}}]}}, delays[path]


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def parse_streams(specs: list[str]) -> dict[str, tuple[int, float]]:
    """``["/v1/chat/completions=20:2"]`` -> ``{"/v1/chat/completions": (20, 2.0)}``."""
    streams = {}
    for spec in specs:
        path, _, shape = spec.partition("=")
        chunks, _, seconds = shape.partition(":")
        streams[path] = (int(chunks), float(seconds))
    return streams


def chat_completion(prompt: object) -> dict:
    """A whole chat completion answering ``prompt`` (the request's last message content)."""
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "bench",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": str(prompt)}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def chat_request(body: bytes) -> tuple[bool, object]:
    """(whether it asks for a stream, the last message's content) of a chat request body."""
    try:
        document = json.loads(body)
        return document.get("stream") is True, document["messages"][-1].get("content")
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return False, None


def http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def stream_event(index: int) -> bytes:
    chunk = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "bench",
        "choices": [{"index": 0, "delta": {"content": f"token{index} "}, "finish_reason": None}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


async def send_stream(writer: asyncio.StreamWriter, chunks: int, seconds: float) -> None:
    """One streamed chat completion: ``chunks`` events over ``seconds``, then [DONE]."""
    writer.write(STREAM_HEAD)
    pause = seconds / max(chunks - 1, 1)
    for index in range(chunks):
        if index:
            await asyncio.sleep(pause)
        writer.write(http_chunk(stream_event(index)))
        await writer.drain()
    writer.write(http_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    await writer.drain()


async def serve_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    delays: dict[str, float],
    streams: dict[str, tuple[int, float]] | None = None,
    chats: dict[str, tuple[int, float]] | None = None,
) -> None:
    """Answer requests on one keep-alive connection until the client closes it."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, path, _version = request_line.split(" ", 2)
            headers = dict(line.lower().split(": ", 1) for line in header_lines if ": " in line)
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            route = path.partition("?")[0]
            if chats and route in chats:
                wants_stream, prompt = chat_request(body)
                if wants_stream:
                    await send_stream(writer, *chats[route])
                else:
                    writer.write(response_bytes(200, chat_completion(prompt)))
                    await writer.drain()
                if headers.get("connection") == "close":
                    break
                continue
            if streams and route in streams:
                await send_stream(writer, *streams[route])
                if headers.get("connection") == "close":
                    break
                continue
            status, document, delay = answer(method, path.partition("?")[0], body, delays)
            if delay:
                await asyncio.sleep(delay)
            writer.write(response_bytes(status, document))
            await writer.drain()
            if headers.get("connection") == "close":
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the client went away, between requests or in the middle of one
    finally:
        writer.close()


async def serve(
    sock: socket.socket,
    delays: dict[str, float],
    streams: dict[str, tuple[int, float]],
    chats: dict[str, tuple[int, float]] | None = None,
) -> None:
    server = await asyncio.start_server(lambda r, w: serve_connection(r, w, delays, streams, chats), sock=sock)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True, help="listening socket inherited from the parent")
    parser.add_argument("--stream", action="append", default=[], metavar="PATH=CHUNKS:SECONDS")
    parser.add_argument("--chat", action="append", default=[], metavar="PATH=CHUNKS:SECONDS")
    parser.add_argument("delays", nargs="*", metavar="PATH=SECONDS")
    args = parser.parse_args()
    sock = socket.socket(fileno=args.fd)
    asyncio.run(serve(sock, parse_delays(args.delays), parse_streams(args.stream), parse_streams(args.chat)))


if __name__ == "__main__":
    main()
