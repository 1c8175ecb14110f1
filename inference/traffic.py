"""What the routing state knows of each worker's traffic, and the rules both implementations
apply to it: the ejection policy, peak-EWMA latency, the success-rate window."""

import math
from dataclasses import dataclass
from enum import Enum

from django.conf import settings

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
