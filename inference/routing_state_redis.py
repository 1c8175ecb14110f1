"""The routing state in Redis, shared by every process and host that uses the same Redis.

Each change is one Lua script or a single command; when Redis is away, routing goes on with a
state of this process's own (``LocalRoutingState``).
"""

import logging
import time
from collections.abc import Callable, Sequence

from django.conf import settings

from inference.engine_signals import EngineSignals
from inference.outcomes import Outcome
from inference.routing_state_local import LocalRoutingState
from inference.traffic import (
    FAILURE_LATENCY_MS,
    Acquired,
    EjectionPolicy,
    Finished,
    Traffic,
    _decayed,
    _minute,
)
from mmm.breaker import redis_breaker
from mmm.redis_client import redis_away_errors, shared_state_redis

logger = logging.getLogger("mmm.routing")

# --- Redis ----------------------------------------------------------------------------------
# Each script is one atomic step on the server. Times are the caller's clock (seconds since the
# epoch); the gateway hosts are expected to keep time with NTP, and a second of skew only moves
# when an ejection ends by a second.

_ACQUIRE = """
local now, token, hold_until = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local cap, panic = tonumber(ARGV[4]), ARGV[5] == '1'
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if cap > 0 and redis.call('ZCARD', KEYS[1]) >= cap then return -1 end
if not panic then
  local h = redis.call('HMGET', KEYS[2], 'ejected_until', 'ejections', 'trial_until')
  if tonumber(h[1] or 0) > now then return -3 end
  if tonumber(h[2] or 0) > 0 then
    if tonumber(h[3] or 0) > now then return -2 end
    redis.call('HSET', KEYS[2], 'trial_until', hold_until, 'trial_token', token)
  end
end
redis.call('ZADD', KEYS[1], hold_until, token)
local ttl = math.ceil(hold_until - now) + 60
if redis.call('TTL', KEYS[1]) < ttl then redis.call('EXPIRE', KEYS[1], ttl) end
redis.call('EXPIRE', KEYS[2], 86400)
return 1
"""

# KEYS: in-flight set, worker hash, stats bucket, then the hashes of the model's other workers.
_FINISH = """
local now, token, outcome = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local latency, reason, decay = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local after, base, max_s, allowed = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
redis.call('ZREM', KEYS[1], token)
local w = KEYS[2]
if redis.call('HGET', w, 'trial_token') == token then redis.call('HDEL', w, 'trial_token', 'trial_until') end
if outcome == 'neutral' then return 0 end
redis.call('HINCRBY', KEYS[3], 'total', 1)
redis.call('EXPIRE', KEYS[3], 180)
redis.call('EXPIRE', w, 86400)
local h = redis.call('HMGET', w, 'ewma', 'ewma_at', 'ejected_until', 'ejections')
local ewma, ewma_at = tonumber(h[1]), tonumber(h[2] or now)
if outcome == 'ok' then
  redis.call('HINCRBY', KEYS[3], 'ok', 1)
  if ewma == nil or latency > ewma then ewma = latency
  else
    local weight = math.exp(-math.max(now - ewma_at, 0) / decay)
    ewma = ewma * weight + latency * (1 - weight)
  end
  redis.call('HSET', w, 'ewma', ewma, 'ewma_at', now, 'fails', 0, 'ejections', 0, 'ejected_until', 0, 'reason', '')
  return 0
end
local penalty = math.max(latency or 0, tonumber(ARGV[11]))
if ewma == nil or penalty > ewma then redis.call('HSET', w, 'ewma', penalty, 'ewma_at', now) end
local fails = redis.call('HINCRBY', w, 'fails', 1)
if tonumber(h[3] or 0) > now then return 0 end
local ejections = tonumber(h[4] or 0)
if ejections == 0 and fails < after then return 0 end
local ejected = 0
for i = 4, #KEYS do
  if tonumber(redis.call('HGET', KEYS[i], 'ejected_until') or 0) > now then ejected = ejected + 1 end
end
if ejected >= allowed then return 2 end
ejections = ejections + 1
redis.call('HSET', w, 'ejections', ejections, 'ejected_until', now + math.min(base * ejections, max_s), 'reason', reason)
return 1
"""

# KEYS: in-flight set, worker hash. Only a token still there is kept longer (XX).
_EXTEND = """
redis.call('ZADD', KEYS[1], 'XX', 'GT', ARGV[2], ARGV[1])
if redis.call('HGET', KEYS[2], 'trial_token') == ARGV[1] then
  redis.call('HSET', KEYS[2], 'trial_until', ARGV[2])
end
local ttl = math.ceil(tonumber(ARGV[2]) - tonumber(ARGV[3])) + 60
if redis.call('TTL', KEYS[1]) < ttl then redis.call('EXPIRE', KEYS[1], ttl) end
return 0
"""

_COOL_DOWN = """
local cool_until = tonumber(ARGV[1])
if tonumber(redis.call('HGET', KEYS[1], 'cooldown_until') or 0) < cool_until then
  redis.call('HSET', KEYS[1], 'cooldown_until', cool_until)
end
redis.call('EXPIRE', KEYS[1], 86400)
return 0
"""

_ROUND_ROBIN = """
local total, best, best_score = 0, nil, nil
for i = 1, #ARGV, 2 do
  local id, weight = ARGV[i], tonumber(ARGV[i + 1])
  total = total + weight
  local score = redis.call('HINCRBY', KEYS[1], id, weight)
  if best == nil or score > best_score then best, best_score = id, score end
end
redis.call('HINCRBY', KEYS[1], best, -total)
redis.call('EXPIRE', KEYS[1], 86400)
return best
"""

# KEYS: the model's budget window hash, the set of its retries running now.
_TAKE_RETRY = """
local now, token, hold_until = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local min_running, ratio, window_ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local requests = tonumber(redis.call('HGET', KEYS[1], 'requests') or 0)
local retries = tonumber(redis.call('HGET', KEYS[1], 'retries') or 0)
if retries >= ratio * requests and redis.call('ZCARD', KEYS[2]) >= min_running then return 0 end
redis.call('HINCRBY', KEYS[1], 'retries', 1)
redis.call('EXPIRE', KEYS[1], window_ttl)
redis.call('ZADD', KEYS[2], hold_until, token)
redis.call('EXPIRE', KEYS[2], math.ceil(hold_until - now) + 60)
return 1
"""


class RedisRoutingState:
    """The state in Redis, shared by every process and host that uses the same Redis."""

    def __init__(self, *, url: str, prefix: str, clock: Callable[[], float] = time.time):
        self.clock = clock
        self._prefix = prefix
        self._redis = shared_state_redis(url=url, timeout=settings.MMM_ROUTING_STATE_TIMEOUT)
        self._errors = redis_away_errors()
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._finish = self._redis.register_script(_FINISH)
        self._cool_down = self._redis.register_script(_COOL_DOWN)
        self._extend = self._redis.register_script(_EXTEND)
        self._round_robin = self._redis.register_script(_ROUND_ROBIN)
        self._take_retry = self._redis.register_script(_TAKE_RETRY)
        # While Redis is away (and for the breaker's interval after a failure) this process
        # routes on its own state: per process, as without Redis, never blocked on it.
        self._fallback = LocalRoutingState(clock=clock)
        self._last_warning = 0.0

    def _key(self, *parts: object) -> str:
        return ":".join([self._prefix, *map(str, parts)])

    def _away(self) -> bool:
        return redis_breaker.is_open()

    def _unavailable(self, what: str, exc: Exception) -> None:
        redis_breaker.failed(exc)
        now = time.monotonic()
        if now - self._last_warning > 10:
            self._last_warning = now
            logger.warning(
                "routing state in Redis unavailable (%s: %s); routing without shared state", what, type(exc).__name__
            )

    def reset(self) -> None:
        keys = list(self._redis.scan_iter(match=self._key("*"), count=1000))
        if keys:
            self._redis.delete(*keys)

    def snapshot(self, worker_ids: Sequence[int]) -> dict[int, Traffic]:
        if self._away():
            return self._fallback.snapshot(worker_ids)
        now = self.clock()
        minute = _minute(now)
        pipe = self._redis.pipeline(transaction=False)
        for worker_id in worker_ids:
            pipe.hgetall(self._key("w", worker_id))
            pipe.zcount(self._key("if", worker_id), f"({now}", "+inf")
            pipe.hgetall(self._key("st", worker_id, minute))
            pipe.hgetall(self._key("st", worker_id, minute - 1))
        try:
            replies = pipe.execute()
        except self._errors as exc:
            self._unavailable("snapshot", exc)
            return self._fallback.snapshot(worker_ids)
        redis_breaker.succeeded()
        result = {}
        for index, worker_id in enumerate(worker_ids):
            h, in_flight, this_minute, last_minute = replies[index * 4 : index * 4 + 4]
            result[worker_id] = Traffic(
                in_flight=int(in_flight),
                latency_ewma_ms=_decayed(float(h["ewma"]), float(h.get("ewma_at", now)), now) if "ewma" in h else None,
                consecutive_failures=int(h.get("fails", 0)),
                ejections=int(h.get("ejections", 0)),
                ejected_until=float(h.get("ejected_until", 0)),
                ejection_reason=h.get("reason", ""),
                cooldown_until=float(h.get("cooldown_until", 0)),
                trial_until=float(h.get("trial_until", 0)),
                recent_ok=int(this_minute.get("ok", 0)) + int(last_minute.get("ok", 0)),
                recent_total=int(this_minute.get("total", 0)) + int(last_minute.get("total", 0)),
            )
        return result

    def acquire(
        self, *, worker_id: int, token: str, hold_until: float, max_inflight: int | None, panic: bool
    ) -> Acquired:
        if self._away():
            return self._fallback.acquire(
                worker_id=worker_id, token=token, hold_until=hold_until, max_inflight=max_inflight, panic=panic
            )
        try:
            reply = self._acquire(
                keys=[self._key("if", worker_id), self._key("w", worker_id)],
                args=[repr(self.clock()), token, repr(hold_until), max_inflight or 0, "1" if panic else "0"],
            )
        except self._errors as exc:
            self._unavailable("acquire", exc)
            return self._fallback.acquire(
                worker_id=worker_id, token=token, hold_until=hold_until, max_inflight=max_inflight, panic=panic
            )
        redis_breaker.succeeded()
        return Acquired(int(reply))

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
    ) -> Finished:
        if self._away():
            return self._fallback.finish(
                worker_id=worker_id,
                token=token,
                outcome=outcome,
                latency_ms=latency_ms,
                reason=reason,
                model_worker_ids=model_worker_ids,
                policy=policy,
            )
        now = self.clock()
        others = [self._key("w", other) for other in model_worker_ids if other != worker_id]
        try:
            reply = self._finish(
                keys=[
                    self._key("if", worker_id),
                    self._key("w", worker_id),
                    self._key("st", worker_id, _minute(now)),
                    *others,
                ],
                args=[
                    repr(now),
                    token,
                    outcome.verdict,
                    "" if latency_ms is None else repr(latency_ms),
                    reason[:300],
                    settings.MMM_LATENCY_DECAY_SECONDS,
                    policy.after_failures,
                    policy.base_seconds,
                    policy.max_seconds,
                    policy.allowed(len(model_worker_ids)),
                    FAILURE_LATENCY_MS,
                ],
            )
        except self._errors as exc:
            self._unavailable("finish", exc)
            return Finished()
        return Finished(ejected=reply == 1, ejection_refused=reply == 2)

    def extend(self, *, worker_id: int, token: str, hold_until: float) -> None:
        if self._away():
            return self._fallback.extend(worker_id=worker_id, token=token, hold_until=hold_until)
        try:
            self._extend(
                keys=[self._key("if", worker_id), self._key("w", worker_id)],
                args=[token, repr(hold_until), repr(self.clock())],
            )
        except self._errors as exc:
            self._unavailable("extend", exc)

    def cool_down(self, *, worker_id: int, seconds: float) -> None:
        if self._away():
            return self._fallback.cool_down(worker_id=worker_id, seconds=seconds)
        try:
            self._cool_down(keys=[self._key("w", worker_id)], args=[repr(self.clock() + seconds)])
        except self._errors as exc:
            self._unavailable("cool_down", exc)

    def readmit(self, *, worker_id: int) -> None:
        try:
            self._redis.hdel(
                self._key("w", worker_id), "ejected_until", "ejections", "fails", "trial_until", "trial_token", "reason"
            )
        except self._errors as exc:
            self._unavailable("readmit", exc)

    def round_robin_pick(self, *, group: str, weights: dict[int, int]) -> int:
        if self._away():
            return self._fallback.round_robin_pick(group=group, weights=weights)
        args = [value for worker_id, weight in weights.items() for value in (worker_id, weight)]
        try:
            return int(self._round_robin(keys=[self._key("rr", group)], args=args))
        except self._errors as exc:
            self._unavailable("round_robin", exc)
            return self._fallback.round_robin_pick(group=group, weights=weights)

    def _budget_key(self, model_name: str) -> str:
        return self._key("budget", model_name, int(self.clock() // settings.MMM_RETRY_BUDGET_WINDOW_SECONDS))

    def budget_record_request(self, *, model_name: str) -> None:
        if self._away():
            return self._fallback.budget_record_request(model_name=model_name)
        key = self._budget_key(model_name)
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.hincrby(key, "requests", 1)
            pipe.expire(key, settings.MMM_RETRY_BUDGET_WINDOW_SECONDS * 2)
            pipe.execute()
        except self._errors as exc:
            self._unavailable("budget", exc)

    def budget_take_retry(self, *, model_name: str, token: str, hold_until: float) -> bool:
        if self._away():
            return self._fallback.budget_take_retry(model_name=model_name, token=token, hold_until=hold_until)
        try:
            return bool(
                self._take_retry(
                    keys=[self._budget_key(model_name), self._key("retrying", model_name)],
                    args=[
                        repr(self.clock()),
                        token,
                        repr(hold_until),
                        settings.MMM_RETRY_BUDGET_MIN,
                        settings.MMM_RETRY_BUDGET_RATIO,
                        settings.MMM_RETRY_BUDGET_WINDOW_SECONDS * 2,
                    ],
                )
            )
        except self._errors as exc:
            self._unavailable("budget", exc)
            return self._fallback.budget_take_retry(model_name=model_name, token=token, hold_until=hold_until)

    def budget_release_retry(self, *, model_name: str, token: str) -> None:
        self._fallback.budget_release_retry(model_name=model_name, token=token)
        if self._away():
            return
        try:
            self._redis.zrem(self._key("retrying", model_name), token)
        except self._errors as exc:
            self._unavailable("budget", exc)

    # Engine signals and prefix tables (engine_aware, prefix_aware). While Redis is away they
    # live in this process, as the rest of the state does.

    def engine_claim(self, *, worker_id: int, seconds: float) -> bool:
        if self._away():
            return self._fallback.engine_claim(worker_id=worker_id, seconds=seconds)
        try:
            claimed = self._redis.set(self._key("engclaim", worker_id), "1", nx=True, px=max(1, int(seconds * 1000)))
        except self._errors as exc:
            self._unavailable("engine_claim", exc)
            return self._fallback.engine_claim(worker_id=worker_id, seconds=seconds)
        return bool(claimed)

    def engine_record(self, *, worker_id: int, signals: EngineSignals) -> None:
        self._fallback.engine_record(worker_id=worker_id, signals=signals)
        if self._away():
            return
        try:
            # Kept an hour: a signal that old is stale anyway, and a removed worker's goes away.
            self._redis.set(self._key("eng", worker_id), signals.to_json(), ex=3600)
        except self._errors as exc:
            self._unavailable("engine_record", exc)

    def engine_read(self, worker_ids: Sequence[int]) -> dict[int, EngineSignals]:
        if self._away() or not worker_ids:
            return self._fallback.engine_read(worker_ids)
        try:
            replies = self._redis.mget([self._key("eng", worker_id) for worker_id in worker_ids])
        except self._errors as exc:
            self._unavailable("engine_read", exc)
            return self._fallback.engine_read(worker_ids)
        return {
            worker_id: EngineSignals.from_json(reply)
            for worker_id, reply in zip(worker_ids, replies, strict=True)
            if reply is not None
        }

    def prefix_record(self, *, worker_id: int, hashes: Sequence[str], capacity: int) -> None:
        if self._away():
            return self._fallback.prefix_record(worker_id=worker_id, hashes=hashes, capacity=capacity)
        if not hashes:
            return
        now = self.clock()
        key = self._key("px", worker_id)
        # The chain's first blocks score as the most recently used, so they are evicted last
        # (a chain that lost its start could never match again).
        scores = {block: now - depth * 1e-6 for depth, block in enumerate(hashes)}
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(key, scores)
        pipe.zremrangebyrank(key, 0, -(capacity + 1))
        pipe.expire(key, 86400)
        try:
            pipe.execute()
        except self._errors as exc:
            self._unavailable("prefix_record", exc)

    def prefix_match(self, *, worker_ids: Sequence[int], hashes: Sequence[str]) -> dict[int, int]:
        if self._away() or not hashes:
            return self._fallback.prefix_match(worker_ids=worker_ids, hashes=hashes)
        pipe = self._redis.pipeline(transaction=False)
        for worker_id in worker_ids:
            pipe.zmscore(self._key("px", worker_id), list(hashes))
        try:
            replies = pipe.execute()
        except self._errors as exc:
            self._unavailable("prefix_match", exc)
            return self._fallback.prefix_match(worker_ids=worker_ids, hashes=hashes)
        result = {}
        for worker_id, scores in zip(worker_ids, replies, strict=True):
            count = 0
            for score in scores:
                if score is None:
                    break
                count += 1
            result[worker_id] = count
        return result
