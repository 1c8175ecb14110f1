"""The routing table: every worker by model name, cached in the process.

Reading the database on every request would put it on the hot path; instead each process
reloads the whole table (building again only the rows that changed) when it is older than
MMM_ROUTING_REFRESH_SECONDS, so a change made through any process or host is in effect
everywhere within that time. A model name the table does not know is looked up at once, so a
model registered a moment ago through another process is callable immediately. Only one thread
or greenlet reloads at a time; the others keep using the previous table meanwhile.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings

from mmm import background, database

logger = logging.getLogger("mmm.routing")

Loader = Callable[[str | None], list]  # model_name, or None for all -> workers
PolicyLoader = Callable[[], list]


class WorkerLoader:
    """The table's loader: one name's workers by a query of that name; every worker through
    registry.worker_rows, which builds again only the rows that changed since its last read."""

    def __init__(self) -> None:
        self._all_rows = None

    def __call__(self, model_name: str | None = None) -> list:
        from registry.selectors import worker_list  # registry's models import this package
        from registry.worker_rows import WorkerRows

        try:
            if model_name is not None:
                return list(worker_list(model_name=model_name))
            if self._all_rows is None:
                self._all_rows = WorkerRows()
            return self._all_rows.read()
        finally:
            database.give_back_connection()


def load_policies() -> list:
    from registry.models import RoutingPolicy

    return list(RoutingPolicy.objects.all())


@dataclass
class Lookup:
    """One query for a model name the table did not know, shared by the requests waiting on it."""

    sequence: int
    done: threading.Event = field(default_factory=threading.Event)
    found: tuple = ()
    error: Exception | None = None
    waiters: int = 0

    def result(self) -> tuple | None:
        if self.error is not None:
            raise self.error
        return self.found or None


NEVER = float("-inf")


class RoutingTable:
    def __init__(
        self,
        *,
        loader: Loader | None = None,
        policy_loader: PolicyLoader = list,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._loader = loader or WorkerLoader()
        self._policy_loader = policy_loader
        self._policies: dict[str, object] = {}
        self._default_policies: dict[str, object] = {}  # names without a policy of their own
        self._clock = clock
        self._by_model: dict[str, tuple] | None = None
        # -inf, not 0: time.monotonic() counts from boot, so 0 is "just loaded" on a host up
        # for less than MMM_ROUTING_REFRESH_SECONDS.
        self._loaded_at = NEVER
        # Bumped by invalidate(): a reload that started before the bump does not count as fresh.
        self._generation = 0
        # The latest lookup of each name missing from the table, running or done.
        self._lookups: dict[str, Lookup] = {}
        self._lookup_seq = 0
        self._reload_lock = threading.Lock()
        self._lookups_guard = threading.Lock()  # bookkeeping only: never held during a query

    def workers_for(self, model_name: str) -> tuple | None:
        """All workers registered for ``model_name`` (routable or not), or None if there are none."""
        table = self._current()
        workers = table.get(model_name)
        if workers is None:
            workers = self._look_up(table, model_name)
        return workers

    def knows(self, model_name: str) -> bool:
        """Whether ``model_name`` has workers in the table (reloaded when stale, but never a
        lookup of one name: a stream of unknown names costs no queries)."""
        try:
            return model_name in self._current()
        except Exception:  # the database is away and nothing was loaded yet
            return False

    def policy_for(self, model_name: str):
        """The routing policy of ``model_name``, or the defaults when it has none."""
        from registry.models import RoutingPolicy

        self._current()
        policy = self._policies.get(model_name) or self._default_policies.get(model_name)
        if policy is None:
            # Made once per name, not per request: a model instance costs more than the lookup.
            if len(self._default_policies) > 10_000:  # random model names must not grow memory without end
                self._default_policies = {}
            policy = self._default_policies.setdefault(model_name, RoutingPolicy.default_for(model_name))
        return policy

    def invalidate(self) -> None:
        """Reload on the next request (after a change made in this process)."""
        self._generation += 1
        self._loaded_at = NEVER
        self._lookups.clear()

    def _look_up(self, table: dict[str, tuple], model_name: str) -> tuple | None:
        """Find a model registered since the last reload, possibly through another host.

        A lookup that began after this request arrived saw every registration the request
        could know of, so requests for one name that arrive together share one query (and
        its failure), a stream of them runs one query at a time, and other names do not wait.
        """
        arrived_after = self._lookup_seq
        while True:
            with self._lookups_guard:
                if model_name in table:
                    return table[model_name]
                lookup = self._lookups.get(model_name)
                leading = lookup is None or (lookup.done.is_set() and lookup.sequence <= arrived_after)
                if leading:
                    self._lookup_seq += 1
                    lookup = Lookup(sequence=self._lookup_seq)
                    if len(self._lookups) > 10_000:  # random names must not grow memory without end
                        self._lookups.clear()
                    self._lookups[model_name] = lookup
                elif not lookup.done.is_set():
                    lookup.waiters += 1
            if leading:
                self._run_lookup(lookup, table, model_name)
            else:
                lookup.done.wait()
            if lookup.sequence > arrived_after:
                return lookup.result()
            # That lookup began before this request arrived: start or join a newer one.

    def _run_lookup(self, lookup: "Lookup", table: dict[str, tuple], model_name: str) -> None:
        try:
            with database.request_path(what="model lookup"):
                lookup.found = tuple(self._loader(model_name))
                if lookup.found:
                    # A model new to this table may have come with its policy: take it too.
                    policy = next((p for p in self._policy_loader() if p.model_name == model_name), None)
            if lookup.found:
                if policy is not None:
                    self._policies = {**self._policies, model_name: policy}
                self._default_policies.pop(model_name, None)
                table[model_name] = lookup.found
        except Exception as exc:
            lookup.error = exc
        finally:
            lookup.done.set()

    def _current(self) -> dict[str, tuple]:
        table = self._by_model
        if table is not None and self._loaded_at and background.running():
            # Reloaded off the request path (mmm.background): the table in hand serves. Asked
            # first, since every look at the table (several per request) passes here; reading a
            # setting costs more than this check.
            return table
        fresh = table is not None and self._clock() - self._loaded_at < settings.MMM_ROUTING_REFRESH_SECONDS
        if fresh:
            return table
        if table is not None and database.breaker.is_open():
            # The database is away: the table in hand serves.
            return table
        if table is not None and not self._reload_lock.acquire(blocking=False):
            return table  # another thread or greenlet is reloading; the old table serves meanwhile
        if table is None:
            self._reload_lock.acquire()
        try:
            if self._by_model is not table and self._by_model is not None:
                return self._by_model  # reloaded by another while this one waited for the lock
            with database.request_path(what="routing table reload"):
                return self._reload()
        except Exception:
            if table is None:
                raise
            logger.exception("routing table reload failed; serving the previous table")
            self._loaded_at = self._clock()
            return table
        finally:
            self._reload_lock.release()

    def refresh(self) -> None:
        """Reload now, off the request path (mmm.background); a failure keeps the table in hand.

        A table no request has asked for yet is left to the first one, which loads it fresh."""
        if self._by_model is None:
            return
        with self._reload_lock:
            with database.watching():
                self._reload()

    def _reload(self) -> dict[str, tuple]:
        generation = self._generation
        started = self._clock()
        self._by_model = self._load_all()
        self._lookups.clear()
        if generation == self._generation:
            self._loaded_at = started
        return self._by_model

    def _load_all(self) -> dict[str, tuple]:
        self._policies = {policy.model_name: policy for policy in self._policy_loader()}
        self._default_policies = {}  # settings may have changed the defaults
        grouped: dict[str, list] = {}
        for worker in self._loader(None):
            grouped.setdefault(worker.model_name, []).append(worker)
        return {name: tuple(workers) for name, workers in grouped.items()}


routing_table = RoutingTable(policy_loader=load_policies)
