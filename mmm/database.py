"""The database as the request path sees it: bounded waits and a circuit breaker.

Once a process is warm, a request needs nothing from the database: keys, the routing table
and policies are kept in memory and refreshed off the request path (mmm.background). What
does still ask the database on a request (a key or model name seen for the first time, an
expired entry) is bounded by MMM_DB_REQUEST_TIMEOUT. A failure opens the breaker: for a
short, growing interval (0.5 s doubling up to MMM_DB_BREAKER_MAX_SECONDS) no request asks
again, so an outage costs one bounded wait per interval and process, not one per request.
The background refresh is what tries again; its first success closes the breaker.

Under gevent, libpq's own timeouts do not hold: psycogreen makes libpq non-blocking, and its
connect_timeout is only applied in blocking mode. So the waits are enforced here with a
gevent.Timeout around the call (a blackholed server that accepts and never answers is the
case that matters). Outside gevent (tests, manage.py) libpq's connect_timeout and the
server's statement_timeout bound them.
"""

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import DatabaseError, OperationalError, connection

from mmm.breaker import Breaker


class DatabaseUnavailable(OperationalError):
    """The database did not answer in time, or the breaker is open after a recent failure."""


def gevent_active() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey and monkey.is_module_patched("socket"))


@contextmanager
def deadline(seconds: float, *, what: str) -> Iterator[None]:
    """Raise DatabaseUnavailable if the block takes longer than ``seconds`` (under gevent)."""
    if not gevent_active():
        yield
        return
    import gevent

    timeout = gevent.Timeout(seconds)
    timeout.start()
    try:
        yield
    except gevent.Timeout as exc:
        if exc is not timeout:
            raise
        # The connection may be half way through a message: it cannot be used again.
        drop_connection()
        raise DatabaseUnavailable(f"the database did not answer the {what} within {seconds:g} s") from None
    finally:
        timeout.close()


def give_back_connection() -> None:
    """After the database was read for a request: close this greenlet's connection now.

    Under gevent each greenlet has its own connection, kept until its request ends, and the
    request may now wait minutes on an upstream. The background refresh keeps its own open
    (mmm.background drops it after a failure and once a minute): opening one costs more than
    reloading a small routing table, and it reads several times a second.
    """
    from mmm import background

    if connection.in_atomic_block or background.in_loop():
        return
    connection.close()


def drop_connection_if_dead() -> None:
    """Before the background loop reads on the connection it kept: drop it if the server has
    gone since (restarted, failed over, the session killed), so the read opens a new one
    instead of failing, opening the breaker and keeping requests off a database that is back.
    One round trip on PostgreSQL, bounded as a request's database call; nothing on SQLite."""
    if connection.connection is None:
        return
    try:
        with deadline(settings.MMM_DB_REQUEST_TIMEOUT, what="connection check"):
            usable = connection.is_usable()
    except DatabaseUnavailable:
        return  # frozen: the deadline has dropped it, and the read will try a new one
    if not usable:
        drop_connection()


def drop_connection() -> None:
    """Close this greenlet's connection, which may be broken."""
    try:
        connection.close()
    except Exception:
        connection.connection = None


@contextmanager
def request_path(*, what: str) -> Iterator[None]:
    """A database call made on a request: refused at once while the breaker is open, else bounded.

    Where the background refresh runs, it alone tries again after a failure (a request never
    pays for the trial); elsewhere the first request after the interval does.
    """
    from mmm import background

    if breaker.is_open() or (breaker.failures and background.running()):
        raise DatabaseUnavailable(f"the database failed recently; {what} not attempted")
    with watching(within=settings.MMM_DB_REQUEST_TIMEOUT, what=what):
        yield


@contextmanager
def watching(*, within: float | None = None, what: str = "query") -> Iterator[None]:
    """Record the outcome of a database call (the background refresh is the breaker's trial);
    ``within`` bounds it (default: a connect plus a statement, as the server would)."""
    if within is None:
        within = background_bound()
    try:
        with deadline(within, what=what):
            yield
    except DatabaseError as exc:
        breaker.failed(exc)
        raise
    breaker.succeeded()


def background_bound() -> float:
    """The longest a database call off the request path may take (it may hang on a frozen
    connection otherwise: the server's statement_timeout cannot fire if nothing reaches it)."""
    from mmm import background

    if background.in_loop():
        # The loop's reads are small, and its connection is kept between them: one that froze
        # since the last read (a server gone without a word) must fail about when a fresh
        # connect would have, not after a statement's timeout, or the loop (the breaker's only
        # trial under gunicorn) would keep requests off the database that long.
        return settings.MMM_DB_CONNECT_TIMEOUT + settings.MMM_DB_REQUEST_TIMEOUT
    return settings.MMM_DB_CONNECT_TIMEOUT + (settings.MMM_DB_STATEMENT_TIMEOUT or 30.0)


breaker = Breaker(name="database", max_seconds=lambda: settings.MMM_DB_BREAKER_MAX_SECONDS)
