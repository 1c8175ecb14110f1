"""Django's own work at the start and end of every request, done in one pass per signal.

Django connects five receivers to ``request_started`` and ``request_finished``: reset_queries and
close_old_connections at the start; close_old_connections, close_caches and reset_urlconf at the
end. Each looks up the initialized database connections or caches, or the URLconf, in an
asgiref ``Local``, and under gevent every such lookup takes a patched lock and its context
manager: the two signals cost 70 µs per request here on a slow day
(`python -m bench.per_request_costs`), about 3% of a proxied completion's CPU. ``install``
replaces Django's five with two receivers that do the same work: one look-up of the initialized connections per signal, close_caches'
loop only when a configured cache backend has a ``close`` of its own (Django's local-memory and
Redis backends inherit BaseCache's, which does nothing), and the URLconf reset as Django does it.
It installs only where Django's five are all that is connected to the two signals: a receiver of
anyone else's (an operator's, an instrumentation's) might rely on running after Django's, and the
new two would come after it, so then Django's stay.

Only gunicorn's worker processes install it (mmm/gunicorn.conf.py's post_worker_init). Django's
test client disconnects and reconnects Django's own close_old_connections around every request
it makes (so a test's transaction survives its requests), which only works while that function
is what is connected; a process that uses the test client keeps Django's receivers.
"""

import weakref

from django.conf import settings
from django.core import signals
from django.core.cache import caches, close_caches
from django.core.cache.backends.base import BaseCache
from django.core.handlers.base import reset_urlconf
from django.db import close_old_connections, connections, reset_queries
from django.urls import set_urlconf
from django.utils.module_loading import import_string

# Django's receivers this replaces, by signal.
DJANGOS = {
    signals.request_started: (reset_queries, close_old_connections),
    signals.request_finished: (close_old_connections, close_caches, reset_urlconf),
}

_closes_caches = True  # whether a configured cache backend has a close() that does something


def started(**kwargs) -> None:
    """reset_queries, then close_old_connections, over one look-up of the connections."""
    initialized = connections.all(initialized_only=True)
    for connection in initialized:
        connection.queries_log.clear()
    for connection in initialized:
        connection.close_if_unusable_or_obsolete()


def finished(**kwargs) -> None:
    """close_old_connections, close_caches, reset_urlconf, in Django's order."""
    for connection in connections.all(initialized_only=True):
        connection.close_if_unusable_or_obsolete()
    if _closes_caches:
        caches.close_all()
    set_urlconf(None)


def install() -> bool:
    """Swap Django's receivers for ``started`` and ``finished``; False (and nothing changed)
    unless Django's, and only they, are connected to both signals (one of them is disconnected
    while the test client serves a request; another receiver may need to run after them)."""
    global _closes_caches
    for signal, receivers in DJANGOS.items():
        connected = _receivers_of(signal)
        if len(connected) != len(receivers) or not all(receiver in connected for receiver in receivers):
            return False
    _closes_caches = any(_backend_closes(alias) for alias in settings.CACHES)
    for signal, receivers in DJANGOS.items():
        for receiver in receivers:
            signal.disconnect(receiver)
    # (Strong references: these module functions live as long as the process.)
    signals.request_started.connect(started, weak=False, dispatch_uid="mmm.request_signals.started")
    signals.request_finished.connect(finished, weak=False, dispatch_uid="mmm.request_signals.finished")
    return True


def uninstall() -> None:
    """Django's receivers again (the tests of this module)."""
    signals.request_started.disconnect(dispatch_uid="mmm.request_signals.started")
    signals.request_finished.disconnect(dispatch_uid="mmm.request_signals.finished")
    for signal, receivers in DJANGOS.items():
        for receiver in receivers:
            signal.connect(receiver)


def _receivers_of(signal) -> list:
    """The live receivers of ``signal``, as Signal._live_receivers reads them (a weak reference,
    or the receiver itself)."""
    live = (ref() if isinstance(ref, weakref.ReferenceType) else ref for _key, ref, *_rest in signal.receivers)
    return [receiver for receiver in live if receiver is not None]


def _connected(signal, receiver) -> bool:
    return any(live is receiver for live in _receivers_of(signal))


def _backend_closes(alias: str) -> bool:
    backend = import_string(settings.CACHES[alias]["BACKEND"])
    return getattr(backend, "close", None) is not BaseCache.close
