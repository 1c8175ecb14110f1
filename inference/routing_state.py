"""Routing state shared by every gateway process: in-flight requests, latency, ejections.

A gateway runs several gunicorn processes on several hosts. If each kept its own counters,
each would see only its own share of the traffic: least-busy counts that drift, an ejection
the other processes never hear of. So the state lives in Redis when ``REDIS_URL`` is set, and
every change is one atomic step there (a Lua script or a single command, never read, modify,
write from Python). Without Redis the processes of one gunicorn share the hot part of the state
(in-flight counts, latency, ejections, the retry budget) in memory the master made before forking
them (inference.routing_state_shared), and the rest in a small server the master starts
(inference.host_state); a lone process (tests, runserver) keeps its own.

In-flight requests are kept as a set of request tokens, each with the time by which its
request must have ended; a token past that time no longer counts. So a process that dies with
requests in flight cannot leave a count behind that never goes down, and a request that fails,
times out or is cancelled gives back its token in a ``finally``.

The interface is ``RoutingState`` below; ``inference.routing_state_local`` and
``inference.routing_state_redis`` implement it (and ``inference.routing_state_shared``,
``inference.host_state``), and the tests run over them.

If Redis stops answering (each call is bounded by MMM_ROUTING_STATE_TIMEOUT, with no retry),
requests go on with this process's own state rather than fail, and for the breaker's growing
interval (mmm.breaker) no request asks Redis again: routing is per process meanwhile, the
gateway does not go down or wait.
"""

import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from django.conf import settings

from inference.engine_signals import EngineSignals
from inference.outcomes import Outcome
from inference.routing_state_local import LocalRoutingState
from inference.routing_state_redis import RedisRoutingState
from inference.traffic import FAILURE_LATENCY_MS, Acquired, EjectionPolicy, Finished, Traffic

__all__ = ["FAILURE_LATENCY_MS", "Acquired", "EjectionPolicy", "Finished", "RoutingState", "Traffic", "routing_state"]


class RoutingState(Protocol):
    """What the router asks of the shared state. Every method is one atomic step.

    A seed completion that succeeds on its first try is three calls (three Redis round trips,
    or three to the host's server): ``snapshot`` (which also counts the request for the retry
    budget), ``acquire``, ``finish``. ``model_name`` is the worker's model: the Redis state keeps
    a model's keys in one hash slot (so each script stays on one Redis Cluster node), and a
    caller that knows only worker ids may leave it out.
    """

    clock: Callable[[], float]

    def reset(self) -> None: ...

    def snapshot(
        self, worker_ids: Sequence[int], *, model_name: str | None = None, record_request: bool = False
    ) -> dict[int, Traffic]:
        """The traffic of each worker as it is now; with ``record_request``, the request also
        counts towards ``model_name``'s retry budget (once per request, on its first look)."""

    def acquire(
        self,
        *,
        worker_id: int,
        token: str,
        hold_until: float,
        max_inflight: int | None,
        panic: bool,
        model_name: str | None = None,
    ) -> Acquired:
        """Take an in-flight slot on the worker (its half-open trial, if one is due), until ``hold_until``."""

    def extend(self, *, worker_id: int, token: str, hold_until: float, model_name: str | None = None) -> None:
        """Hold a taken slot longer (a stream that is still being relayed)."""

    def finish(
        self,
        *,
        worker_id: int,
        token: str,
        outcome: Outcome,
        latency_ms: float | None,
        reason: str,
        model_worker_ids: Sequence[int],
        policy: EjectionPolicy,
        model_name: str | None = None,
    ) -> Finished:
        """Give the slot back and record ``outcome.verdict``; eject the worker if it keeps failing."""

    def cool_down(self, *, worker_id: int, seconds: float, model_name: str | None = None) -> None:
        """Rest a worker that said "too many requests", without holding it against it."""

    def readmit(self, *, worker_id: int, model_name: str | None = None) -> None:
        """End an ejection (a probe has just seen the worker answer)."""

    def round_robin_pick(self, *, group: str, weights: dict[int, int]) -> int: ...

    def budget_take_retry(self, *, model_name: str, token: str, hold_until: float) -> bool: ...

    def budget_release_retry(self, *, model_name: str, token: str) -> None: ...

    def engine_claim(self, *, worker_id: int, seconds: float) -> bool:
        """Whether this scraper reads the worker's engine now: one scraper of several (on
        several hosts) per worker per ``seconds``."""

    def engine_record(self, *, worker_id: int, signals: EngineSignals) -> None:
        """Keep what the worker's engine last said (inference.engine_signals)."""

    def engine_read(self, worker_ids: Sequence[int]) -> dict[int, EngineSignals]:
        """What each worker's engine last said; workers never scraped are left out."""

    def prefix_record(self, *, worker_id: int, hashes: Sequence[str], capacity: int) -> None:
        """Note that prompts with these prefix block hashes went to the worker: its table keeps the
        ``capacity`` most recently used (inference.prefixes)."""

    def prefix_match(self, *, worker_ids: Sequence[int], hashes: Sequence[str]) -> dict[int, int]:
        """For each worker, how many of ``hashes`` (a chain, from the first) its table holds."""


_state: RoutingState | None = None
_state_lock = threading.Lock()


def routing_state() -> RoutingState:
    """This process's handle on the shared routing state (created on first use)."""
    global _state
    if _state is None:
        with _state_lock:
            if _state is None:
                if settings.REDIS_URL:
                    _state = RedisRoutingState(url=settings.REDIS_URL, prefix=settings.MMM_ROUTING_STATE_PREFIX)
                elif settings.MMM_HOST_STATE_SOCKET:
                    from inference.host_state import HostRoutingState  # the processes of one gunicorn

                    host = HostRoutingState(
                        path=settings.MMM_HOST_STATE_SOCKET, timeout=settings.MMM_ROUTING_STATE_TIMEOUT
                    )
                    shared = None
                    if settings.MMM_SHARED_MEMORY_STATE:
                        from inference.routing_state_shared import shared_routing_state

                        shared = shared_routing_state(fallback=host)  # None outside a gunicorn worker
                    _state = shared or host
                else:
                    _state = LocalRoutingState()
    return _state
