"""gunicorn's HTTP/1.1 response writer, sending the head together with the first body bytes.

gunicorn writes a response's status line and headers in one send and each body item in another,
so a whole JSON answer (every completion that does not stream) costs two sends, two TCP segments
and two wake-ups of the client. On loopback a send is the costliest call in the gateway (it
carries the segment through the kernel up to the receiver's buffer): about a tenth of a worker's
CPU samples under load, a third of them heads (bench.hot_path_profile). This writer keeps the head
until the first body item and sends both at once; a large item goes after the head as before,
without being copied into one buffer with it.

Nothing else changes: the head is the bytes gunicorn builds (its own code builds them, into a
buffer instead of the socket), the first byte of a stream leaves when its first item does, as
before, and a head with no body to follow (HEAD, 204, 304, an empty first item, a file sent with
sendfile, an error before any body) is sent on its own when gunicorn would have sent it.

``http_date`` is gunicorn's Date header text, made once per second instead of once per response.
"""

import time

from gunicorn import util
from gunicorn.http import wsgi

from mmm.socket_send import send_all

# Larger first items are sent after the head instead of being copied into one buffer with it.
COALESCE_MAX_BYTES = 64 * 1024


_gunicorns_http_date = util.http_date
_date_of_second: tuple[int, str] = (-1, "")


def http_date(timestamp: float | None = None) -> str:
    """``gunicorn.util.http_date``: the current date's text is the same for a whole second (the
    header has no finer unit), and formatting it through ``email.utils`` cost 3.7 µs per response,
    1% of a completion's CPU samples at c=32."""
    global _date_of_second
    if timestamp is not None:
        return _gunicorns_http_date(timestamp)
    second = int(time.time())
    if _date_of_second[0] != second:
        _date_of_second = (second, _gunicorns_http_date(second))
    return _date_of_second[1]


class SocketBuffer:
    """Stands in for a client socket, keeping what gunicorn writes to it."""

    def __init__(self) -> None:
        self.written = b""

    def gettimeout(self) -> float:
        return 0.0

    def sendall(self, data: bytes) -> None:
        self.written += data


class CoalescingResponse(wsgi.Response):
    _deferring = False
    _head: bytes | None = None

    def send_headers(self) -> None:
        if self.headers_sent or not self._deferring:
            return super().send_headers()
        sock, buffer = self.sock, SocketBuffer()
        self.sock = buffer
        try:
            super().send_headers()
        finally:
            self.sock = sock
        self._head = buffer.written

    def write(self, arg) -> None:
        # Only a body write may hold the head back: sendfile(), close() and gunicorn's error
        # paths call send_headers() themselves and send it at once.
        self._deferring = True
        try:
            super().write(arg)
        finally:
            self._deferring = False
            self._send_held_head()  # when write() sent no body after all

    def _emit_body(self, data: bytes) -> None:
        head = self._head
        if head is None or len(data) > COALESCE_MAX_BYTES:
            self._send_held_head()
            return super()._emit_body(data)
        self._head = None
        body = SocketBuffer()
        util.write(body, data, self.chunked)  # gunicorn's framing of the item
        send_all(self.sock, head + body.written)

    def _send_held_head(self) -> None:
        head, self._head = self._head, None
        if head is not None:
            self.sock.sendall(head)
