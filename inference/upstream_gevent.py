"""Outbound HTTP where gevent runs the process: geventhttpclient's C parser over pools of our own.

``inference.upstream`` uses this under gevent's monkey patching (gunicorn's gevent workers,
``make serve``): a call costs about a third of the CPU of one through urllib3's pools there
(bench/clients.py), most of the difference being urllib3's pure-Python layers over http.client.
Outside gevent (the prober's threads, tests' threads, management commands) urllib3 stays: a
gevent socket belongs to one thread's hub, so a pool of them cannot be shared between threads.

The pool is ours, not geventhttpclient's ``HTTPClient``, to keep what urllib3's pools give the
gateway: every new connection is checked against ``inference.egress`` and goes to the checked
address, each call has its own connect timeout, no request is ever retried (``HTTPClient``
retries a GET whose pooled connection was closed), and a host's pool never makes a caller
wait (urllib3's ``block=False``: past the pool's size a connection is opened anyway and closed
after its answer). The response speaks the part of urllib3's response interface that
``inference.upstream`` and ``inference.streaming`` use, and raises urllib3's exception classes,
so both clients share one error mapping and the same messages.
"""

import collections
import functools
import re
import select
import socket
from dataclasses import dataclass
from typing import Any

import gevent.socket
import gevent.ssl
import urllib3
from gevent.monkey import get_original
from geventhttpclient.response import HTTPConnectionClosed, HTTPParseError, HTTPSocketPoolResponse
from urllib3.response import BaseHTTPResponse
from urllib3.util import parse_url

from inference import egress
from mmm.socket_send import send_all

# As urllib3's PoolManager(num_pools=32): the hosts a process keeps connections to at once.
MAX_HOSTS = 32
_BLOCK_BYTES = 64 * 1024
_BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))  # urllib3 sends Content-Length: 0 without a body
# What http.client refuses in a header on urllib3's path (a name with a colon or whitespace, a
# line break not followed by folding whitespace), refused here alike.
_LEGAL_NAME = re.compile(r"\A[^:\s][^:\r\n]*\Z")
_ILLEGAL_VALUE = re.compile(r"\n(?![ \t])|\r(?![ \t\n])")


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as resolved and checked
    port: int
    request_uri: str  # path and query, percent-encoded as urllib3 sends them
    host_header: str  # what urllib3 sends as Host: the name, the port unless the scheme's default


@functools.lru_cache(maxsize=4096)
def target(url: str) -> Target:
    """Where ``url`` goes, parsed once per URL (a worker's URL repeats on every call)."""
    parts = parse_url(url)
    scheme = (parts.scheme or "http").lower()
    if scheme not in ("http", "https") or not parts.host:
        raise urllib3.exceptions.LocationValueError("the URL names no http(s) host")
    default_port = 443 if scheme == "https" else 80
    port = parts.port or default_port
    host = parts.host.strip("[]")
    shown = host.rstrip(".")
    shown = f"[{shown}]" if ":" in shown else shown
    host_header = shown if port == default_port else f"{shown}:{port}"
    return Target(scheme, host, port, parts.request_uri, host_header)


def request_head(*, method: str, target: Target, headers: dict[str, str], body: bytes | None) -> bytes:
    """The request line and headers as urllib3 would send them. A refused header is named,
    its value never shown (it may be a key)."""
    lines = [f"{method} {target.request_uri} HTTP/1.1", f"Host: {target.host_header}"]
    for name, value in headers.items():
        if not _LEGAL_NAME.match(name):
            raise ValueError(f"header name {name!r} is not allowed")
        if _ILLEGAL_VALUE.search(value):
            raise ValueError(f"the value of header {name} holds a line break")
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    elif method.upper() in _BODY_METHODS:
        lines.append("Content-Length: 0")
    try:
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError("a header holds a character outside latin-1") from None


class HostPool:
    """Kept-alive connections to one host: at most ``size`` idle, the last returned reused first."""

    def __init__(self, *, target: Target, size: int, ssl_context: gevent.ssl.SSLContext | None) -> None:
        self.target = target
        self.size = size
        self.ssl_context = ssl_context
        self._idle: list[gevent.socket.socket] = []

    def checkout(self, *, connect_timeout: float) -> gevent.socket.socket:
        """An idle connection the upstream has not closed, else a new checked one."""
        while self._idle:
            sock = self._idle.pop()
            if _still_open(sock):
                return sock
            sock.close()
        return self._connect(connect_timeout)

    def return_socket(self, sock: gevent.socket.socket) -> None:
        """Called by the response once it was read to its end and the upstream keeps it alive."""
        if len(self._idle) < self.size:
            self._idle.append(sock)
        else:
            sock.close()

    def release_socket(self, sock: gevent.socket.socket) -> None:
        """Called by the response for a connection that cannot be reused (half read, or closing)."""
        sock.close()

    def clear(self) -> None:
        while self._idle:
            self._idle.pop().close()

    def _connect(self, connect_timeout: float) -> gevent.socket.socket:
        # Resolved and checked here, then connected to the checked address itself: a name
        # answering differently a moment later (DNS rebinding) is never asked again.
        try:
            address = egress.policy().resolve(self.target.host, self.target.port)[0]
        except socket.gaierror as exc:
            raise urllib3.exceptions.NameResolutionError(self.target.host, None, exc) from None
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = gevent.socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as urllib3 does
            sock.settimeout(connect_timeout)
            sock.connect((address, self.target.port))
            if self.ssl_context is not None:
                # The certificate is checked against the name, not the address connected to.
                sock = self.ssl_context.wrap_socket(sock, server_hostname=self.target.host.rstrip("."))
        except TimeoutError:
            sock.close()
            raise urllib3.exceptions.ConnectTimeoutError("connect timed out") from None
        except BaseException:
            sock.close()
            raise
        return sock


# The standard library's poll, not gevent's select: with a zero timeout it never waits, and
# gevent's builds a watcher and switches greenlets for it (1.5% of a completion's CPU, once per
# checkout). poll, not select: a busy worker's descriptors pass select's limit of 1024.
_poll = get_original("select", "poll")
_READABLE = select.POLLIN | select.POLLHUP | select.POLLERR


def _still_open(sock: gevent.socket.socket) -> bool:
    """False when an idle connection is readable: the upstream closed it (or sent stray bytes)."""
    try:
        fileno = sock.fileno()
        if fileno < 0:
            return False
        poller = _poll()
        poller.register(fileno, _READABLE)
        readable = poller.poll(0)
    except (OSError, ValueError):
        return False
    return not readable


class GeventPools:
    """The process's pools, one per scheme, host and port, the least recently used of
    ``MAX_HOSTS`` closed when another host is needed."""

    def __init__(self, *, pool_size: int, ca_certs: str) -> None:
        self.pool_size = pool_size
        self.ca_certs = ca_certs
        self._pools: collections.OrderedDict[tuple[str, str, int], HostPool] = collections.OrderedDict()
        self._ssl_context: gevent.ssl.SSLContext | None = None

    def pool_for(self, target: Target) -> HostPool:
        key = (target.scheme, target.host, target.port)
        pool = self._pools.get(key)
        if pool is not None:
            self._pools.move_to_end(key)
            return pool
        if len(self._pools) >= MAX_HOSTS:
            _, oldest = self._pools.popitem(last=False)
            oldest.clear()
        pool = HostPool(
            target=target, size=self.pool_size, ssl_context=self._tls() if target.scheme == "https" else None
        )
        self._pools[key] = pool
        return pool

    def clear(self) -> None:
        """Close every idle connection (as urllib3's PoolManager.clear)."""
        while self._pools:
            self._pools.popitem()[1].clear()

    def _tls(self) -> gevent.ssl.SSLContext:
        if self._ssl_context is None:
            # The CA bundle urllib3 is given (certifi's), the host name checked, TLS 1.2 at
            # least (the default context's), and HTTP/1.1 offered by ALPN as urllib3 does.
            context = gevent.ssl.create_default_context(cafile=self.ca_certs)
            context.set_alpn_protocols(["http/1.1"])
            self._ssl_context = context
        return self._ssl_context

    def start(
        self,
        *,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        connect_timeout: float,
        timeout: float,
    ) -> "GeventResponse":
        """Send one request; return once the status line and headers are in."""
        where = target(url)
        head = request_head(method=method, target=where, headers=headers, body=body)
        pool = self.pool_for(where)
        sock = pool.checkout(connect_timeout=connect_timeout)
        try:
            sock.settimeout(timeout)
            send_all(sock, head + body if body else head)
        except BaseException as exc:
            pool.release_socket(sock)
            if isinstance(exc, TimeoutError):
                raise urllib3.exceptions.ReadTimeoutError(None, None, "the request could not be sent in time") from None
            raise
        try:
            # The response reads the headers now, and closes the connection if that fails.
            return GeventResponse(sock, pool, method=method.upper(), block_size=_BLOCK_BYTES)
        except TimeoutError:
            raise urllib3.exceptions.ReadTimeoutError(None, None, "no answer in time") from None
        except HTTPConnectionClosed:
            raise urllib3.exceptions.ProtocolError("Remote end closed connection without response") from None
        except HTTPParseError:
            raise urllib3.exceptions.ProtocolError("the answer is not HTTP/1.1") from None


class _Headers:
    """A response's headers as urllib3 shows them: a repeated header's values joined."""

    def __init__(self, headers: Any) -> None:
        self._headers = headers

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self._headers.get(name)
        if value is None:
            return default
        return value if isinstance(value, str) else ", ".join(value)


class GeventResponse(HTTPSocketPoolResponse):
    """An answer whose status and headers are in, the body still on the wire.

    The parser gives the socket back to its pool the moment the body's last byte is parsed
    (when the upstream keeps it alive) and closes it on a parse error; ``close`` closes a
    connection whose body was not read to its end, so a half-read one is never reused.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._decoder: Any = None
        self._flushed = False
        super().__init__(*args, **kwargs)
        encoding = (self.headers.get("content-encoding") or "").lower()
        if _decodes(encoding):
            # urllib3's own decoders, as decode_content=True uses them (gzip, deflate, br, zstd).
            self._decoder = urllib3.response._get_decoder(encoding)

    @property
    def status(self) -> int:
        return self.get_code()

    @property
    def headers(self) -> _Headers:  # type: ignore[override]
        return _Headers(self._headers_index)

    @property
    def connection(self) -> "GeventResponse":
        """What urllib3's response calls its connection: here the response itself, whose
        ``sock`` callers give a timeout before each read."""
        return self

    @property
    def sock(self) -> gevent.socket.socket | None:
        return self._sock

    def read1(self, amt: int = _BLOCK_BYTES, decode_content: bool = True) -> bytes:
        """The next bytes of the body as soon as any arrive (decoded), b"" at its end.

        Raises urllib3's ReadTimeoutError when the socket's timeout passes, ProtocolError when
        the body is cut off or is not HTTP, DecodeError when it does not decompress.
        """
        while True:
            raw = self._next_raw(amt)
            if self._decoder is None or not decode_content:
                return raw
            try:
                if raw:
                    decoded = self._decoder.decompress(raw)
                elif self._flushed:
                    return b""
                else:
                    self._flushed = True
                    return self._decoder.flush()
            except Exception as exc:  # zlib.error, brotli.error, zstd's: whatever the decoder raises
                self.release()
                raise urllib3.exceptions.DecodeError(f"the body does not decode ({type(exc).__name__})") from None
            if decoded:
                return decoded

    def _next_raw(self, amt: int) -> bytes:
        while not self._body_buffer:
            sock = self._sock
            if self.message_complete or sock is None:
                return b""
            try:
                data = sock.recv(self.block_size)
                self.feed(data)
            except TimeoutError:
                self.release()
                raise urllib3.exceptions.ReadTimeoutError(None, None, "read timed out") from None
            except HTTPParseError:  # includes the body ending early: "Incomplete response."
                self.release()
                raise urllib3.exceptions.ProtocolError("Response ended prematurely") from None
            except OSError as exc:  # as urllib3 wraps a broken socket
                self.release()
                raise urllib3.exceptions.ProtocolError(f"Connection broken: {type(exc).__name__}") from None
            except BaseException:
                self.release()
                raise
        chunk = bytes(self._body_buffer[:amt])
        del self._body_buffer[:amt]
        return chunk

    def release_conn(self) -> None:
        self.release()

    def __repr__(self) -> str:  # the parser's shows every header, and a header may carry a secret
        return f"<GeventResponse status={self.status}>"

    def close(self) -> None:
        self.release()


def _decodes(encoding: str) -> bool:
    """Whether urllib3 decodes this Content-Encoding: one it knows, or a list ("gzip, br") naming
    one it knows (the same test as urllib3's HTTPResponse._init_decoder)."""
    known = BaseHTTPResponse.CONTENT_DECODERS
    return encoding in known or ("," in encoding and any(part.strip() in known for part in encoding.split(",")))
