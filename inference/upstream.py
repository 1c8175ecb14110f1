"""Outbound HTTP to model servers: one set of pools per process, a timeout on every call.

Under gevent's monkey patching (gunicorn's gevent workers) the pools are
``inference.upstream_gevent``'s, geventhttpclient's parser at a third of urllib3's CPU per
call; elsewhere (the prober's threads, tests, management commands) and with
MMM_UPSTREAM_GEVENTHTTPCLIENT off, urllib3's. Both connect only where ``inference.egress``
allows and never retry or follow a redirect.

Failures come back as typed exceptions so the caller can decide about retries; none of them
carries a header value or a URL's query string, where upstream API keys live.
"""

import base64
import contextlib
import importlib.metadata
import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

import certifi
import gevent
import gevent.monkey
import urllib3
from django.conf import settings

from inference import egress, upstream_gevent

# inference.redaction defines what is secret and how it is masked.
from inference.redaction import mask_secrets
from mmm import json_codec, tracing
from mmm.request_id import HEADER as REQUEST_ID_HEADER
from mmm.request_id import current_request_id

_CHUNK_BYTES = 64 * 1024
# Headers that frame the message or route it: urllib3 sets them for the body it sends, and a
# stored second copy would make two parties read one request differently (request smuggling)
# or send it to another virtual host than the URL names. Refused at registration; dropped here
# from a worker stored before that.
FRAMING_HEADERS = frozenset(
    (
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        "te",
        "trailer",
        "keep-alive",
        "proxy-connection",
    )
)


@dataclass(frozen=True)
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    json_body: Any = None  # None sends no body


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    content: bytes
    content_type: str
    seconds: float
    retry_after: str | None = None  # the upstream's Retry-After header, as sent

    def json_or_text(self) -> tuple[bool, Any]:
        """(True, parsed JSON) when the body is JSON, else (False, the body as text)."""
        try:
            return True, json_codec.loads(self.content)
        except ValueError:
            return False, self.content.decode("utf-8", errors="replace")

    def snippet(self, *, secrets: Iterable[str] = (), limit: int = 200) -> str:
        """The start of the body, for an error message: secrets masked before it is cut (so a
        key running across the cut is masked too), NUL bytes dropped (PostgreSQL refuses them)."""
        longest = max((len(secret) * 3 for secret in secrets), default=0)  # percent-encoding triples
        text = self.content[: limit + longest].decode("utf-8", errors="replace").replace("\x00", "")
        text = mask_secrets(text, secrets=secrets)
        return text[:limit] + ("…" if len(text) > limit or len(self.content) > limit + longest else "")


class UpstreamError(Exception):
    """Base of failures to get a complete response from an upstream."""


class UpstreamUnreachable(UpstreamError):
    """Connection refused or reset, DNS failure, TLS failure: nothing usable came back."""


class UpstreamTimedOut(UpstreamError):
    """The upstream did not answer within its timeout."""


class UpstreamTooLarge(UpstreamError):
    """The response body was larger than MMM_MAX_RESPONSE_BYTES."""


# What the hot path sends through: urllib3's pools, or geventhttpclient's under gevent; and
# the answers they give, both read through the same read1/sock/release_conn surface.
Pool = urllib3.PoolManager | upstream_gevent.GeventPools
Response = urllib3.BaseHTTPResponse | upstream_gevent.GeventResponse
_pool_lock = threading.Lock()
_pool: Pool | None = None
logger = logging.getLogger("mmm.upstream")
# The headers requests' Session sent by default before issue 16 took requests off this path,
# kept so upstreams see the same request (a worker's own headers override them). Spelled as
# requests.utils.default_headers() builds them, without importing requests (4 MiB of every
# worker process, with charset_normalizer) for four strings.
DEFAULT_HEADERS: dict[str, str] = {
    "User-Agent": f"python-requests/{importlib.metadata.version('requests')}",
    "Accept-Encoding": ", ".join(re.split(r",\s*", urllib3.util.make_headers(accept_encoding=True)["accept-encoding"])),
    "Accept": "*/*",
    "Connection": "keep-alive",
}


def shared_pool() -> Pool:
    """The process's connection pools, built on first use (after gunicorn forked and gevent patched)."""
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                if settings.MMM_UPSTREAM_GEVENTHTTPCLIENT and gevent.monkey.is_module_patched("socket"):
                    pool_size, client = settings.MMM_UPSTREAM_POOL_SIZE, "geventhttpclient"
                    _pool = upstream_gevent.GeventPools(pool_size=pool_size, ca_certs=certifi.where())
                else:
                    _pool, client = new_pool(pool_size=settings.MMM_UPSTREAM_POOL_SIZE), "urllib3"
                # Once per process, so an operator (and a test) can tell which client is in use.
                logger.info("upstream calls go through %s", client)
    return _pool


def new_pool(*, pool_size: int) -> urllib3.PoolManager:
    """urllib3's pools, which requests is built on, used directly: a request through them costs
    half the CPU of one through a requests.Session (bench/clients.py), and no environment proxy
    or .netrc applies. Retries are the balancer's decision (on another worker), never urllib3's
    on the same one; redirects are answers like any other (following one would send the
    worker's headers, its keys, wherever the upstream points). Every new connection is checked
    against the egress policy and goes to the checked address."""
    # certifi's CA bundle, as requests used: the same upstream certificates are trusted as before.
    return egress.CheckedPoolManager(num_pools=32, maxsize=pool_size, retries=False, ca_certs=certifi.where())


def send(
    request: UpstreamRequest,
    *,
    timeout: float,
    connect_timeout: float | None = None,
    max_bytes: int | None = None,
    pool: Pool | None = None,
) -> UpstreamResponse:
    """Send ``request`` and read the whole response, or raise an UpstreamError.

    ``timeout`` is the longest the whole exchange may take. Under gunicorn's gevent workers it
    is a hard deadline: the greenlet is interrupted and the connection dropped wherever it
    waits. In plain threads (the prober, tests) every read of the body waits only until the
    deadline; the wait for the response headers is bounded per read by ``timeout``.
    """
    pool = pool or shared_pool()
    connect_timeout = min(connect_timeout or settings.MMM_CONNECT_TIMEOUT, timeout)
    max_bytes = max_bytes or settings.MMM_MAX_RESPONSE_BYTES
    started = time.monotonic()
    hard_deadline = _hard_deadline(timeout)
    try:
        with hard_deadline, upstream_errors(timeout=timeout, connect_timeout=connect_timeout):
            response = start_exchange(
                pool, request, headers=outbound_headers(request), connect_timeout=connect_timeout, timeout=timeout
            )
            with response:
                content = read_body(response, deadline=started + timeout, max_bytes=max_bytes)
    except gevent.Timeout as fired:
        if fired is not hard_deadline:
            raise
        raise UpstreamTimedOut(f"no complete answer within {timeout:g} s") from None
    return UpstreamResponse(
        status=response.status,
        content=content,
        content_type=response.headers.get("Content-Type", ""),
        seconds=time.monotonic() - started,
        retry_after=response.headers.get("Retry-After"),
    )


def encoded_body(json_body: Any) -> bytes:
    """The bytes a request's ``json_body`` goes out as (what a signature over the body must sign)."""
    return json_codec.dumps(json_body)


def start_exchange(
    pool: Pool,
    request: UpstreamRequest,
    *,
    headers: dict[str, str],
    connect_timeout: float,
    timeout: float,
) -> Response:
    """Send ``request``; return once the status line and headers are in, the body left to read."""
    data = None if request.json_body is None else encoded_body(request.json_body)
    with tracing.http_client_span(request.method, request.url, headers) as span:
        if isinstance(pool, upstream_gevent.GeventPools):
            response = pool.start(
                method=request.method,
                url=request.url,
                body=data,
                headers=headers,
                connect_timeout=connect_timeout,
                timeout=timeout,
            )
        else:
            response = pool.urlopen(
                request.method,
                request.url,
                body=data,
                headers=headers,
                timeout=urllib3.Timeout(connect=connect_timeout, read=timeout),
                retries=False,
                redirect=False,
                preload_content=False,
                decode_content=True,
            )
        tracing.http_client_answered(span, response.status)
    return response


def outbound_headers(request: UpstreamRequest, *, accept: str | None = None) -> dict[str, str]:
    """The headers an upstream request goes out with: the worker's, the request id, a JSON type,
    and the defaults (``accept`` as the Accept) that the worker's headers do not override."""
    headers = {name: value for name, value in request.headers.items() if name.lower() not in FRAMING_HEADERS}
    defaults = DEFAULT_HEADERS if accept is None else {**DEFAULT_HEADERS, "Accept": accept}
    overridden = {name.lower() for name in headers}
    headers = {name: value for name, value in defaults.items() if name.lower() not in overridden} | headers
    if "@" in request.url:
        basic = url_credentials(request.url)
        if basic is not None:
            # As requests did: a user and password in the URL are sent as Basic auth, over any
            # Authorization of the worker's headers (urllib3 would send them nowhere).
            headers = {name: value for name, value in headers.items() if name.lower() != "authorization"}
            headers["Authorization"] = basic
    present = {name.lower() for name in headers}  # (one pass, not one per header asked about)
    request_id = current_request_id.get()
    if request_id and "x-request-id" not in present:
        headers[REQUEST_ID_HEADER] = request_id  # one id from the client's log to the model server's
    if request.json_body is not None and "content-type" not in present:
        headers["Content-Type"] = "application/json"
    return headers


def url_credentials(url: str) -> str | None:
    """The Basic Authorization value for the user and password in ``url``, None if it has none."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return None
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    try:
        raw = pair.encode("latin-1")  # what requests sent (RFC 7617's original charset)
    except UnicodeEncodeError:
        raw = pair.encode("utf-8")
    return "Basic " + base64.b64encode(raw).decode("ascii")


@contextlib.contextmanager
def upstream_errors(*, timeout: float, connect_timeout: float):
    """Turn what urllib3 and the egress check raise into this module's UpstreamErrors."""
    try:
        yield
    except egress.EgressDenied as exc:
        raise UpstreamUnreachable(f"refused by the egress policy: {exc}") from None
    except urllib3.exceptions.NewConnectionError as exc:  # a subclass of ConnectTimeoutError
        raise UpstreamUnreachable(describe_connection_error(exc)) from None
    except urllib3.exceptions.ConnectTimeoutError:
        raise UpstreamTimedOut(f"no connection within {connect_timeout:g} s") from None
    except urllib3.exceptions.ReadTimeoutError:
        raise UpstreamTimedOut(f"no answer within {timeout:g} s") from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise UpstreamUnreachable(describe_connection_error(exc)) from None


def _hard_deadline(seconds: float) -> gevent.Timeout | contextlib.nullcontext:
    """A timer that interrupts the exchange after ``seconds``, where gevent runs the process.

    gevent.Timeout is a BaseException, so no ``except Exception`` inside either client swallows
    it; both close a connection left half-read rather than pool it.
    """
    if gevent.monkey.is_module_patched("socket"):
        return gevent.Timeout(seconds)
    return contextlib.nullcontext()


def read_body(response: Response, *, deadline: float, max_bytes: int) -> bytes:
    """Read the body chunk by chunk, each read waiting at most until ``deadline``; raises
    UpstreamTooLarge past ``max_bytes`` and what ``body_chunks`` raises."""
    chunks: list[bytes] = []
    size = 0
    for chunk in body_chunks(response, deadline=deadline):
        size += len(chunk)
        if size > max_bytes:
            raise UpstreamTooLarge(f"response body exceeds {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def body_chunks(response: Response, *, deadline: float) -> Iterator[bytes]:
    """The body's chunks as they arrive, each read waiting at most until ``deadline``.

    read1() returns as soon as any bytes arrive, and the socket's timeout is set to the time
    left before each read, so a server sending a byte now and then cannot stretch the exchange
    past its timeout even outside gevent. Raises urllib3's ReadTimeoutError when the time is up,
    UpstreamUnreachable when the body is cut off.
    """
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise urllib3.exceptions.ReadTimeoutError(None, None, "the body did not arrive in time")
        # Looked up before each read: once the body's last byte is in, the connection is back in
        # its pool (the response has none), and its timeout is another call's to set.
        sock = getattr(response.connection, "sock", None)
        if sock is not None:
            sock.settimeout(remaining)
        try:
            chunk = response.read1(_CHUNK_BYTES, decode_content=True)
        except urllib3.exceptions.ReadTimeoutError:
            raise
        except (urllib3.exceptions.HTTPError, OSError):
            raise UpstreamUnreachable("response cut off") from None
        if not chunk:
            return
        yield chunk


@dataclass(frozen=True)
class Downloaded:
    status: int
    content_type: str
    size: int  # bytes written (a non-2xx answer's body is kept in ``error_body`` instead)
    error_body: bytes = b""


def download(
    request: UpstreamRequest,
    *,
    into: BinaryIO,
    timeout: float,
    max_bytes: int,
    pool: Pool | None = None,
) -> Downloaded:
    """Send ``request`` and write a 2xx answer's body to ``into`` as it arrives (a video may be
    far larger than is worth holding in memory), within ``timeout`` for the whole exchange.
    Raises an UpstreamError as ``send`` does."""
    pool = pool or shared_pool()
    connect_timeout = min(settings.MMM_CONNECT_TIMEOUT, timeout)
    hard_deadline = _hard_deadline(timeout)
    deadline = time.monotonic() + timeout
    try:
        with hard_deadline, upstream_errors(timeout=timeout, connect_timeout=connect_timeout):
            response = start_exchange(
                pool, request, headers=outbound_headers(request), connect_timeout=connect_timeout, timeout=timeout
            )
            with response:
                content_type = response.headers.get("Content-Type", "")
                if not 200 <= response.status < 300:
                    body = b""
                    for chunk in body_chunks(response, deadline=deadline):
                        body += chunk
                        if len(body) >= 64 * 1024:  # enough for an error message
                            break
                    return Downloaded(status=response.status, content_type=content_type, size=0, error_body=body)
                size = 0
                for chunk in body_chunks(response, deadline=deadline):
                    size += len(chunk)
                    if size > max_bytes:
                        raise UpstreamTooLarge(f"response body exceeds {max_bytes} bytes")
                    into.write(chunk)
    except gevent.Timeout as fired:
        if fired is not hard_deadline:
            raise
        raise UpstreamTimedOut(f"no complete answer within {timeout:g} s") from None
    return Downloaded(status=response.status, content_type=content_type, size=size)


def describe_connection_error(exc: BaseException) -> str:
    """A short cause without the URL (urllib3 puts the host, and may put the URL, in its messages)."""
    text = str(exc).lower()
    for needle, said in (
        ("connection refused", "connection refused"),
        ("connection reset", "connection reset"),
        ("remote end closed", "connection closed without a response"),
        ("name or service not known", "host name not found"),
        ("nodename nor servname", "host name not found"),
        ("temporary failure in name resolution", "host name not found"),
        ("failed to resolve", "host name not found"),
        ("certificate", "TLS certificate error"),
        ("ssl", "TLS error"),
        ("response ended prematurely", "response cut off"),
        ("incompleteread", "response cut off"),
    ):
        if needle in text:
            return said
    return f"connection failed ({type(exc).__name__})"
