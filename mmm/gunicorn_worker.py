"""gunicorn's gevent worker, answering the requests gunicorn refuses itself in the API's JSON,
taking its share of the host's connections (mmm.connection_balance), sending each response's
head with its first body bytes and formatting its Date once a second (mmm.gunicorn_response),
reading its configuration as plain attributes, and remembering which peers may set forwarded
headers.

gunicorn answers a request it cannot parse, or one over its limits (mmm/gunicorn.conf.py), before
the application sees it, with a small HTML page. This worker lets gunicorn decide, log and count
the refusal as it always does, and sends the same status as a JSON error instead
(``{"success": false, "msg", "code"}``; the request's path, and so its API, is mostly unknown).
"""

import json

from gevent.server import StreamServer
from gunicorn import util
from gunicorn.config import Config
from gunicorn.http import message, wsgi
from gunicorn.workers import ggevent
from gunicorn.workers.ggevent import GeventWorker as _GeventWorker

from mmm import connection_balance
from mmm.gunicorn_response import CoalescingResponse, SocketBuffer, http_date

# gunicorn's status -> (code, message); the message never echoes what the client sent.
_REFUSALS = {
    400: ("bad_request", "the request is not valid HTTP/1.1 (request line, headers or chunked framing)"),
    403: ("forbidden", "the request was refused before it reached the gateway"),
    414: ("request_line_too_long", "the request line is longer than {cfg.limit_request_line} bytes"),
    417: ("expectation_failed", "the Expect header asks for something the gateway does not do"),
    431: (
        "headers_too_large",
        "a header is longer than {cfg.limit_request_field_size} bytes, or there are "
        "more than {cfg.limit_request_fields} headers",
    ),
    501: ("not_implemented", "the Transfer-Encoding is not supported; send chunked or a Content-Length"),
}


class _BalancedStreamServer(StreamServer):
    """Accepts as gevent's server does, after a pause when this worker is ahead of the others."""

    _paused_once = False

    def _do_read(self):
        if not self._paused_once and connection_balance.ahead_of_the_others():
            self._paused_once = True
            self.stop_accepting()  # (it also drops a timer of gevent's own: set ours after)
            self._timer = self.loop.timer(connection_balance.PAUSE_SECONDS)
            self._timer.start(self._start_accepting_if_started)
            return
        self._paused_once = False  # waited once: accept whoever is still waiting
        super()._do_read()


class _SettledConfig(Config):
    """gunicorn's Config, each of whose settings is a plain attribute once it has been read.

    Config answers every ``cfg.name`` in its ``__getattr__`` (a dictionary look-up and the
    setting's ``get()``), and gunicorn reads its settings 20-odd times per request while it parses
    and answers (the request limits, the forwarded-header policy, the error stream, keep-alive):
    1.2% of a proxied completion's CPU at c=32 (docs/benchmark.md). A value read once is kept in
    the instance's ``__dict__``, where the next read finds it without a Python call; ``set`` drops
    it, so a setting changed through the Config is read again.
    """

    def __getattr__(self, name):
        value = super().__getattr__(name)
        self.__dict__[name] = value
        return value

    def set(self, name, value):
        super().set(name, value)
        self.__dict__.pop(name, None)


# Peers and allow lists remembered at most; past it the memo starts again (public clients' addresses
# are unbounded, a proxy's few).
_MOST_REMEMBERED_PEERS = 4096


def remembered_allow_list_check(check):
    """gunicorn's ``_ip_in_allow_list(ip, allow_list, networks)``, answering a peer it has seen.

    gunicorn asks for every request whether the peer may set forwarded headers (its
    ``forwarded_allow_ips``), parsing the address with ``ipaddress`` and testing each network:
    1.8 µs a request (``bench.per_request_costs``), 1% of the samples at c=32, for an answer
    that only changes with the allow list. The networks are computed from the list, so the list
    (as a tuple) and the address are the key.
    """
    answers: dict[tuple, bool] = {}

    def checked(ip_str, allow_list, networks):
        key = (ip_str, tuple(allow_list))
        answer = answers.get(key)
        if answer is None:
            if len(answers) >= _MOST_REMEMBERED_PEERS:
                answers.clear()
            answer = answers[key] = check(ip_str, allow_list, networks)
        return answer

    return checked


class GeventWorker(_GeventWorker):
    def init_process(self):
        connection_balance.start_counting(self)
        if type(self.cfg) is Config:  # (this worker process's copy; the master's stays as it was)
            self.cfg.__class__ = _SettledConfig
        super().init_process()

    def run(self):
        # gunicorn's run() builds its listening servers by this module name; only this worker
        # process runs it.
        ggevent.StreamServer = _BalancedStreamServer
        wsgi.Response = CoalescingResponse  # what wsgi.create() answers HTTP/1.1 requests with
        util.http_date = http_date  # its Date header, made once a second
        message._ip_in_allow_list = remembered_allow_list_check(message._ip_in_allow_list)
        super().run()

    def handle(self, listener, client, addr):
        connection_balance.opened()
        try:
            super().handle(listener, client, addr)
        finally:
            connection_balance.closed()

    def handle_error(self, req, client, addr, exc):
        captured = SocketBuffer()
        super().handle_error(req, captured, addr, exc)
        try:
            _version, status, reason = captured.written.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            status = int(status)
        except ValueError:
            return util.write_nonblock(client, captured.written)
        try:
            util.write_nonblock(client, _json_answer(status, reason, self.cfg))
        except Exception:
            self.log.debug("Failed to send error message.")


def _json_answer(status: int, reason: str, cfg) -> bytes:
    # The seed API's shape everywhere: most refusals come before the path is known.
    from mmm.api_errors import INTERNAL_ERROR_MSG, error_body

    code, msg = _REFUSALS.get(status, ("internal_error", INTERNAL_ERROR_MSG))
    payload = json.dumps(error_body(msg=msg.format(cfg=cfg), code=code)).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode("latin-1") + payload
