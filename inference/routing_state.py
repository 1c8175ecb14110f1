"""Routing state shared by every gateway process: in-flight requests, latency, ejections.

A gateway runs several gunicorn processes on several hosts. If each kept its own counters,
each would see only its own share of the traffic: least-busy counts that drift, an ejection
the other processes never hear of. So the state lives in Redis when ``REDIS_URL`` is set, and
every change is one atomic step there (a Lua script or a single command, never read, modify,
write from Python). Without Redis the same state lives in this process, under a lock, which is
right for a single process (``make serve`` on a laptop).

In-flight requests are kept as a set of request tokens, each with the time by which its
request must have ended; a token past that time no longer counts. So a process that dies with
requests in flight cannot leave a count behind that never goes down, and a request that fails,
times out or is cancelled gives back its token in a ``finally``.

The interface is ``RoutingState`` below; ``inference.routing_state_local`` and
``inference.routing_state_redis`` implement it, and the tests run over both.

If Redis stops answering, requests go on without shared state (nothing ejected, no counts,
round robin per process) rather than fail: routing gets worse, the gateway does not go down.
"""

import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from django.conf import settings

from inference.outcomes import Outcome

logger = logging.getLogger("mmm.routing")

STATS_WINDOW_SECONDS = 60  # success rate: this bucket and the one before it
# The latency a failed try counts as (Finagle penalizes failures the same way); it fades like any.
FAILURE_LATENCY_MS = 5000.0


class Acquired(int, Enum):
    YES = 1
    AT_CAPACITY = -1
    TRIAL_TAKEN = -2  # half-open: another request is the trial
    EJECTED = -3


@dataclass(frozen=True)
class Traffic:
    """What live traffic says about one worker right now."""

    in_flight: int = 0
    latency_ewma_ms: float | None = None
    consecutive_failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0
    ejection_reason: str = ""
    cooldown_until: float = 0.0
    trial_until: float = 0.0
    recent_ok: int = 0
    recent_total: int = 0

    def is_ejected(self, now: float) -> bool:
        return self.ejected_until > now

    def is_cooling(self, now: float) -> bool:
        return self.cooldown_until > now

    def is_half_open(self, now: float) -> bool:
        """The ejection is over but no request has succeeded since: the next one is a trial."""
        return self.ejections > 0 and not self.is_ejected(now)

    def trial_running(self, now: float) -> bool:
        return self.is_half_open(now) and self.trial_until > now

    @property
    def success_rate(self) -> float | None:
        return self.recent_ok / self.recent_total if self.recent_total else None


@dataclass(frozen=True)
class EjectionPolicy:
    after_failures: int
    base_seconds: float
    max_seconds: float
    max_percent: int

    @classmethod
    def from_settings(cls) -> "EjectionPolicy":
        return cls(
            after_failures=settings.MMM_EJECT_AFTER_FAILURES,
            base_seconds=settings.MMM_EJECT_BASE_SECONDS,
            max_seconds=settings.MMM_EJECT_MAX_SECONDS,
            max_percent=settings.MMM_EJECT_MAX_PERCENT,
        )

    def duration(self, ejections: int) -> float:
        return min(self.base_seconds * ejections, self.max_seconds)

    def allowed(self, model_workers: int) -> int:
        """How many of a model's workers may be ejected at once (at least one, unless 0%)."""
        if self.max_percent <= 0:
            return 0
        return max(1, math.floor(model_workers * self.max_percent / 100))


@dataclass(frozen=True)
class Finished:
    ejected: bool = False
    ejection_refused: bool = False  # would have been ejected, but too many of its model already are


def _peak_ewma(old: float | None, old_at: float, sample: float, now: float, decay: float) -> float:
    """Finagle's peak EWMA: a slower sample is taken at once, faster ones pull it down over ``decay``."""
    if old is None or sample > old:
        return sample
    weight = math.exp(-max(now - old_at, 0.0) / decay)
    return old * weight + sample * (1 - weight)


def _decayed(ewma: float | None, ewma_at: float, now: float) -> float | None:
    """The latency average as it reads now: it fades towards 0 while the worker gets no requests.

    As in Finagle, this is what makes a slow worker be tried again now and then: without it, a
    worker that lost every draw would keep its old latency, and lose every draw, forever.
    """
    if ewma is None:
        return None
    return ewma * math.exp(-max(now - ewma_at, 0.0) / settings.MMM_LATENCY_DECAY_SECONDS)


def _minute(now: float) -> int:
    return int(now // STATS_WINDOW_SECONDS)


class RoutingState(Protocol):
    """What the router asks of the shared state. Every method is one atomic step."""

    clock: Callable[[], float]

    def reset(self) -> None: ...

    def snapshot(self, worker_ids: Sequence[int]) -> dict[int, Traffic]:
        """The traffic of each worker as it is now."""

    def acquire(self, *, worker_id: int, token: str, hold_until: float, max_inflight: int | None, panic: bool) -> Acquired:
        """Take an in-flight slot on the worker (its half-open trial, if one is due), until ``hold_until``."""

    def extend(self, *, worker_id: int, token: str, hold_until: float) -> None:
        """Hold a taken slot longer (a stream that is still being relayed)."""

    def finish(
        self, *, worker_id: int, token: str, outcome: Outcome, latency_ms: float | None, reason: str,
        model_worker_ids: Sequence[int], policy: EjectionPolicy,
    ) -> Finished:
        """Give the slot back and record ``outcome.verdict``; eject the worker if it keeps failing."""

    def cool_down(self, *, worker_id: int, seconds: float) -> None:
        """Rest a worker that said "too many requests", without holding it against it."""

    def readmit(self, *, worker_id: int) -> None:
        """End an ejection (a probe has just seen the worker answer)."""

    def round_robin_pick(self, *, group: str, weights: dict[int, int]) -> int: ...

    def budget_record_request(self, *, model_name: str) -> None: ...

    def budget_take_retry(self, *, model_name: str, token: str, hold_until: float) -> bool: ...

    def budget_release_retry(self, *, model_name: str, token: str) -> None: ...


_state: RoutingState | None = None
_state_lock = threading.Lock()


def routing_state() -> RoutingState:
    """This process's handle on the shared routing state (created on first use)."""
    global _state
    if _state is None:
        with _state_lock:
            if _state is None:
                if settings.REDIS_URL:
                    from inference.routing_state_redis import RedisRoutingState

                    _state = RedisRoutingState(url=settings.REDIS_URL, prefix=settings.MMM_ROUTING_STATE_PREFIX)
                else:
                    from inference.routing_state_local import LocalRoutingState

                    _state = LocalRoutingState()
    return _state
