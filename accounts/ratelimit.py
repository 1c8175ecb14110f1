"""Per-key requests-per-minute limits, exact across every process that shares the cache.

With REDIS_URL set the counter is a Redis key, incremented atomically (INCR) by whichever
gunicorn process or host gets the request, so N requests over the limit in the same second on
ten hosts still let through exactly the limit. Without Redis the processes of one gunicorn
count in the host's shared state (inference.host_state), just as exactly. The window is a fixed minute starting with the
key's first request in it. A request over the limit is refused before the view runs, so it
never reaches an upstream.
"""

import logging
import math
import time
from collections.abc import Callable

from django.conf import settings
from django.core.cache import BaseCache, cache
from rest_framework.throttling import BaseThrottle

from accounts.caller import Caller
from mmm.api_errors import ApiError
from mmm.breaker import redis_breaker

logger = logging.getLogger("mmm.accounts")

WINDOW_SECONDS = 60


class RateLimitUnavailable(ApiError):
    status_code = 503
    default_code = "rate_limit_unavailable"

    def __init__(self):
        super().__init__("the rate limit's counter store (Redis) is unavailable; try again shortly")


class PerKeyRateLimit(BaseThrottle):
    store: BaseCache = cache
    clock: Callable[[], float] = time.time

    def allow_request(self, request, view) -> bool:
        caller = request.auth
        if not isinstance(caller, Caller) or not caller.rate_limit_per_minute or not caller.api_key_prefix:
            return True
        # An exact limit that cannot be counted is not enforced by guessing: refuse clearly, and
        # at once while a recent failure keeps the breaker open.
        if redis_breaker.is_open():
            raise RateLimitUnavailable()
        try:
            count, window_started = self._count(caller.api_key_prefix)
        except Exception as exc:
            logger.error("rate limit counter unavailable: %s", exc)
            redis_breaker.failed(exc)
            raise RateLimitUnavailable() from None
        redis_breaker.succeeded()
        if count <= caller.rate_limit_per_minute:
            return True
        self._wait = max(1.0, window_started + WINDOW_SECONDS - self.clock())
        return False

    def wait(self) -> float:
        return math.ceil(self._wait)

    def _count(self, api_key_prefix: str) -> tuple[int, float]:
        key = f"ratelimit:{api_key_prefix}"
        if self.store is cache and not settings.REDIS_URL and settings.MMM_HOST_STATE_SOCKET:
            # The processes of one gunicorn without Redis: one counter on the host (inference.host_state).
            from inference.routing_state import routing_state

            return routing_state().rate_count(key=key)
        for _ in range(2):
            # add() only sets a missing key, atomically: the first request of a window opens it.
            if self.store.add(key, 0, timeout=WINDOW_SECONDS):
                self.store.set(f"{key}:start", self.clock(), timeout=WINDOW_SECONDS)
            try:
                count = self.store.incr(key)
            except ValueError:  # the window expired between add() and incr(): open the next
                continue
            if count == 1:
                # Django's Redis incr() checks the key exists, then INCRs: if it expired in
                # between, INCR made a key without expiry. Give it one.
                self.store.touch(key, WINDOW_SECONDS)
            started = self.store.get(f"{key}:start")
            return count, started if started is not None else self.clock()
        raise RuntimeError("rate limit window kept expiring")
