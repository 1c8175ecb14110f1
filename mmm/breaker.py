"""A circuit breaker: after a failure, do not ask again for a short, growing interval.

Used for the database (mmm.database) and Redis (the routing state, rate limits): a service
that is away costs one bounded wait per interval and process, not one per request. The
interval starts at 0.5 s and doubles with each failure in a row, up to a maximum; the first
success closes it.
"""

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("mmm.breaker")

BASE_SECONDS = 0.5


class Breaker:
    def __init__(self, *, name: str, max_seconds: Callable[[], float], clock: Callable[[], float] = time.monotonic):
        self.name = name
        self._max_seconds = max_seconds  # read when needed: settings may change in tests
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._open_until = 0.0
        self.opened = 0  # how many times a failure opened it

    def is_open(self) -> bool:
        return self._clock() < self._open_until

    @property
    def failures(self) -> int:
        return self._failures

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            if self.is_open():
                return  # a call that started before the breaker opened: already counted
            self._failures += 1
            self.opened += 1
            interval = min(BASE_SECONDS * 2 ** min(self._failures - 1, 30), self._max_seconds())
            self._open_until = self._clock() + interval
        logger.warning(
            "%s unavailable (%s); not asked on the request path for %.1f s", self.name, describe(exc), interval
        )

    def succeeded(self) -> None:
        if not self._failures:
            return
        with self._lock:
            failures, self._failures, self._open_until = self._failures, 0, 0.0
        logger.info("%s reachable again after %d failed attempt(s)", self.name, failures)

    def reset(self) -> None:
        with self._lock:
            self._failures = 0
            self._open_until = 0.0


def describe(exc: BaseException) -> str:
    # The first line only: driver messages may carry the host and port on later lines.
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _redis_max_seconds() -> float:
    from django.conf import settings

    return settings.MMM_DB_BREAKER_MAX_SECONDS


redis_breaker = Breaker(name="redis", max_seconds=_redis_max_seconds)
"""Redis as the routing state and the rate limits use it: one Redis, one breaker per process."""
