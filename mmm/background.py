"""What each gateway process refreshes off the request path: the routing table and API keys.

gunicorn's post_worker_init starts one loop per worker process (a greenlet under gevent).
It reloads the routing table (with policies) every MMM_ROUTING_REFRESH_SECONDS, the keys
in use every half MMM_API_KEY_CACHE_SECONDS, prices and budgets every MMM_USAGE_REFRESH_SECONDS
(and reconciles budgets with the ledger every MMM_USAGE_RECONCILE_SECONDS), so requests find both fresh and never wait on
the database for them. After a database failure it waits out the breaker's growing interval
(mmm.database) before trying again, and its first success closes the breaker. Without the
loop (tests, manage.py, runserver) the request that finds an entry stale reloads it.
"""

import logging
import threading
import time

from django.conf import settings

from mmm.process import current_pid

logger = logging.getLogger("mmm.background")

_pid: int | None = None
_lock = threading.Lock()
_loop = threading.local()  # greenlet-local under gevent: marks the loop's own greenlet

# The loop keeps its database connection between rounds (mmm.database.give_back_connection),
# checks it before each round that reads (mmm.database.drop_connection_if_dead), and opens a
# new one after any failure and at least this often.
CONNECTION_MAX_AGE_SECONDS = 60.0
_TICK_SECONDS = 0.05


def running() -> bool:
    return _pid == current_pid()


def in_loop() -> bool:
    """Whether the caller is this process's background loop."""
    return getattr(_loop, "active", False)


def start() -> None:
    global _pid
    with _lock:
        if running():
            return
        _pid = current_pid()
    threading.Thread(target=_run, name="background-refresh", daemon=True).start()


def pause_seconds(due: list[float], *, now: float) -> float:
    """How long the loop sleeps: until the next job is due, not waking every tick to find
    nothing (in a worker without traffic each wake-up is the process's own: python -m
    bench.idle_cost); at least a tick (while the breaker is open every job is overdue), at most
    a second."""
    return min(max(min(due) - now, _TICK_SECONDS), 1.0)


def _run() -> None:
    from accounts.keys import key_cache
    from inference.routing import routing_table
    from mmm.database import breaker, drop_connection, drop_connection_if_dead
    from usage.catalog import catalog
    from usage.services import usage_reconcile_due

    jobs = [
        (routing_table.refresh, lambda: max(settings.MMM_ROUTING_REFRESH_SECONDS, 0.1)),
        (key_cache.refresh, lambda: max(settings.MMM_API_KEY_CACHE_SECONDS / 2, 0.1)),
        (catalog.refresh, lambda: max(settings.MMM_USAGE_REFRESH_SECONDS, 0.1)),
        (usage_reconcile_due, lambda: max(settings.MMM_USAGE_RECONCILE_SECONDS, 1.0)),
    ]
    due = [0.0] * len(jobs)
    _loop.active = True
    connected_at = time.monotonic()
    while running():
        now = time.monotonic()
        if now - connected_at > CONNECTION_MAX_AGE_SECONDS:
            drop_connection()
            connected_at = now
        if not breaker.is_open() and any(now >= at for at in due):
            drop_connection_if_dead()
        for index, (job, interval) in enumerate(jobs):
            if now < due[index] or breaker.is_open():
                continue
            try:
                job()
            except Exception as exc:
                drop_connection()  # it may be what failed; the next job opens a new one
                if breaker.failures == 0:
                    logger.exception("background refresh failed: %s", exc)
            due[index] = time.monotonic() + interval()
        time.sleep(pause_seconds(due, now=time.monotonic()))
