"""The routing table: every worker by model name, cached in the process.

Reading the database on every request would put it on the hot path; instead each process
reloads the whole table when it is older than MMM_ROUTING_REFRESH_SECONDS, so a change made
through any process or host is in effect everywhere within that time. A model name the table
does not know is looked up at once, so a model registered a moment ago through another
process is callable immediately. Only one thread or greenlet reloads at a time; the others
keep using the previous table meanwhile.
"""

import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings

logger = logging.getLogger("mmm.routing")

Loader = Callable[[str | None], list]  # model_name or None for all -> workers


def load_workers(model_name: str | None = None) -> list:
    from registry.selectors import worker_list  # registry's models import this package

    return list(worker_list(model_name=model_name))


class RoutingTable:
    def __init__(self, *, loader: Loader = load_workers, clock: Callable[[], float] = time.monotonic):
        self._loader = loader
        self._clock = clock
        self._by_model: dict[str, tuple] | None = None
        self._loaded_at = 0.0
        self._reload_lock = threading.Lock()

    def workers_for(self, model_name: str) -> tuple | None:
        """All workers registered for ``model_name`` (routable or not), or None if there are none."""
        table = self._current()
        workers = table.get(model_name)
        if workers is None:
            # Registered since the last reload, possibly through another process or host.
            found = tuple(self._loader(model_name))
            if found:
                table[model_name] = found
                return found
        return workers

    def invalidate(self) -> None:
        """Reload on the next request (after a change made in this process)."""
        self._loaded_at = 0.0

    def _current(self) -> dict[str, tuple]:
        table = self._by_model
        fresh = table is not None and self._clock() - self._loaded_at < settings.MMM_ROUTING_REFRESH_SECONDS
        if fresh:
            return table
        if table is not None and not self._reload_lock.acquire(blocking=False):
            return table  # another thread or greenlet is reloading; the old table serves meanwhile
        if table is None:
            self._reload_lock.acquire()
        try:
            if self._by_model is table:  # nobody reloaded while this one waited for the lock
                self._by_model = self._load_all()
                self._loaded_at = self._clock()
            return self._by_model
        except Exception:
            if table is None:
                raise
            logger.exception("routing table reload failed; serving the previous table")
            self._loaded_at = self._clock()
            return table
        finally:
            self._reload_lock.release()

    def _load_all(self) -> dict[str, tuple]:
        grouped: dict[str, list] = {}
        for worker in self._loader(None):
            grouped.setdefault(worker.model_name, []).append(worker)
        return {name: tuple(workers) for name, workers in grouped.items()}


routing_table = RoutingTable()
