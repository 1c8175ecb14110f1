"""This process's id and fresh random ids, without a system call on the request path.

``os.getpid()`` is a system call each time (glibc stopped caching it), and the request path asks
about twenty times per completion: "am I still the process that started this thread?" in each
background writer, and prometheus_client's multiprocess values before every change. The id only
changes at a fork, so it is kept here and set again in the child (``os.register_at_fork``), which
every fork of the gateway goes through: gunicorn's, gevent's and multiprocessing's all call
``os.fork``.

``uuid.uuid4()`` reads ``os.urandom``, another system call, twice per completion (its request id
and its routing token). Those ids must only be unique, not unguessable: ``random_hex()`` draws
them from a generator of this module's own, seeded from the OS here and again in every forked
child, so two processes never share a sequence, and no ``random.seed()`` elsewhere (a library's,
a test's) can make ids repeat.
"""

import os
import random

_pid = os.getpid()
_ids = random.Random()  # seeded from os.urandom


def _forked() -> None:
    global _pid
    _pid = os.getpid()
    _ids.seed()  # a child must not draw its parent's sequence


os.register_at_fork(after_in_child=_forked)


def current_pid() -> int:
    """``os.getpid()``, as of the last fork."""
    return _pid


def random_hex() -> str:
    """32 random hex digits, as ``uuid.uuid4().hex`` gives (not for secrets)."""
    return f"{_ids.getrandbits(128):032x}"
