"""The request id of the request being served, for log lines and the upstream's X-Request-ID.

A context variable: under gevent every greenlet (so every request) has a context of its own.
An id a client sends is kept only if it is short and made of safe characters, so it cannot
forge log lines or smuggle anything into the upstream's headers.
"""

import re
from contextvars import ContextVar

from mmm.process import random_hex

HEADER = "X-Request-ID"
META_KEY = "HTTP_X_REQUEST_ID"  # the header in a WSGI environ
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._:-]{1,128}")

current_request_id: ContextVar[str | None] = ContextVar("mmm_request_id", default=None)


def request_id_from(incoming: str | None) -> str:
    """The client's id when it is acceptable, else a new one."""
    if incoming and _ACCEPTABLE.fullmatch(incoming):
        return incoming
    return random_hex()
