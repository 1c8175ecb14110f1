"""A real HTTP server on a free loopback port that plays a model server.

Tests say how each path answers (status, JSON, delay, a handler of their own); every request
is recorded with its parsed body so a test can check exactly what the gateway sent.
"""

import atexit
import json
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    json: Any = None
    text: str | None = None
    body: bytes | None = None  # raw bytes (an image, a video), sent as they are
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering; the wait ends early when the server stops
    trickle: float = 0.0  # seconds between the body's bytes, sent one at a time
    # A streamed body: each item goes out as one HTTP chunk as soon as the iterable yields it
    # (it may block between items, e.g. on an event the test sets).
    stream: Iterable[bytes] | None = None
    cut: bool = False  # end a streamed body by dropping the connection, without its last chunk


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int = 0  # the same port on several requests means one kept-alive connection
    answered: threading.Event = field(default_factory=threading.Event)  # the handler is done
    aborted: bool = False  # the client closed the connection before the whole answer was sent

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    # The standard library listens with a backlog of 5; a gateway opening 200 connections at
    # once would see connects dropped and retried seconds later, which no real model server does.
    request_queue_size = 1024


class FakeUpstream:
    def __init__(self, *, port: int = 0, default: Callable[[Seen], Reply] | None = None) -> None:
        self.routes: dict[str, Reply | Callable[[Seen], Reply]] = {}
        self.default = default  # answers paths without a route of their own
        self.seen: list[Seen] = []
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", port), _make_handler(self))
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str, reply: Reply | Callable[[Seen], Reply] | None = None, **reply_fields) -> str:
        """Set how ``path`` answers; returns its URL."""
        self.routes[path] = reply if reply is not None else Reply(**reply_fields)
        return self.url(path)

    def hits(self, path: str) -> list[Seen]:
        return [seen for seen in self.seen if seen.path.split("?")[0] == path]

    def start(self) -> "FakeUpstream":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, seen: Seen) -> Reply:
        route = self.routes.get(seen.path.split("?")[0], self.default)
        if route is None:
            return Reply(status=404, json={"error": f"fake upstream has no route {seen.path}"})
        reply = route(seen) if callable(route) else route
        if reply.delay:
            self._stopping.wait(reply.delay)
        return reply


def _make_handler(upstream: FakeUpstream):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes; without this, Nagle's algorithm and the
            # client's delayed ACK add 40 ms to every keep-alive response.
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            seen = Seen(
                self.command, self.path, dict(self.headers.items()), self.rfile.read(length), self.client_address[1]
            )
            upstream.seen.append(seen)
            reply = upstream._answer(seen)
            if reply.stream is not None:
                self._stream(seen, reply)
                return
            if reply.body is not None:
                payload, content_type = reply.body, "application/octet-stream"
            elif reply.json is not None:
                payload, content_type = json.dumps(reply.json).encode(), "application/json"
            else:
                payload, content_type = (reply.text or "").encode(), "text/plain; charset=utf-8"
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.headers.get("Content-Type", content_type))
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    if name != "Content-Type":
                        self.send_header(name, value)
                self.end_headers()
                if reply.trickle:
                    self._trickle(payload, reply.trickle)
                else:
                    self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                seen.aborted = True  # the gateway gave up waiting (a timeout test)
            finally:
                seen.answered.set()

        def _stream(self, seen: Seen, reply: Reply) -> None:
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.headers.get("Content-Type", "text/event-stream"))
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.flush()
                for chunk in reply.stream:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                if reply.cut:
                    self.close_connection = True  # closed without the terminating chunk
                else:
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                seen.aborted = True  # the gateway closed the connection in the middle of the stream
                self.close_connection = True
            finally:
                seen.answered.set()

        def _trickle(self, payload: bytes, pause: float) -> None:
            for index in range(len(payload)):
                self.wfile.write(payload[index : index + 1])
                self.wfile.flush()
                if upstream._stopping.wait(pause):
                    return

        do_GET = do_POST = do_PUT = do_DELETE = _handle

        def log_message(self, *args) -> None:
            pass

    return Handler


def until_released(release: threading.Event, *, first: bytes, then: bytes) -> Iterator[bytes]:
    """A stream body that sends ``first`` at once, then ``then`` every 50 ms until ``release``
    is set: an upstream that goes on generating until the gateway hangs up."""
    yield first
    while not release.wait(0.05):
        yield then


# Sockets bound for refused_url, kept open (and so their ports taken) until the test run ends.
_refusing: list[socket.socket] = []


def refused_url(path: str = "/") -> str:
    """A loopback URL where nothing listens: connecting to it is refused at once.

    The port stays bound without listening, so the kernel refuses connections to it and no
    other server of the test run can be given it meanwhile.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    if not _refusing:
        atexit.register(lambda: [held.close() for held in _refusing])
    _refusing.append(sock)
    return f"http://127.0.0.1:{sock.getsockname()[1]}{path}"


def main() -> None:
    """Serve a model server of the seed's shape, to try the gateway by hand:

    python -m tests.fake_upstream --port 8008
    POST any path with {"input": "..."} -> {"data": {"items": [{"attributes": {"answer": "..."}}]}}
    """
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8008)
    port = parser.parse_args().port

    def answer(seen: Seen) -> Reply:
        try:
            prompt = seen.json.get("input", "")
        except ValueError:
            return Reply(status=400, json={"error": "send a JSON body"})
        text = f"fake model on port {port} heard: {prompt}"
        return Reply(json={"data": {"items": [{"attributes": {"answer": text}}]}})

    upstream = FakeUpstream(port=port, default=answer)
    print(f"fake model server on {upstream.url()} (Ctrl-C stops it)", flush=True)
    try:
        upstream._server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
