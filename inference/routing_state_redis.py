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
#
# Keys (P is MMM_ROUTING_STATE_PREFIX, m the model): ``{P:m}:w:<id>`` a worker's hash (latency,
# failures, ejection, cool-down, trial, and its success counts of this minute and the one before),
# ``{P:m}:if:<id>`` its in-flight tokens (a sorted set scored by hold-until), ``{P:m}:budget:<n>``
# and ``{P:m}:retrying`` the model's retry budget, ``{P:m}:rr`` its round-robin scores. The
# braces are a Redis Cluster hash tag: every key of one model is in one slot, so each script
# below touches one slot and the state can be sharded by model.
#
# Redis CPU per request is mostly per round trip and per command a script runs (a Lua call
# costs about a microsecond; a table Lua builds from HGETALL several), so the hot scripts run a
# handful of commands and the snapshot is a plain pipelined read.
#
# TTLs are for keys nobody uses any more (a removed worker): a worker's keys get a day, renewed
# at most once an hour (the ``kept`` field says until when the renewal holds), not one EXPIRE
# after every write.

_KEEP_SECONDS = 86400  # a worker unused for a day is forgotten
_RENEW_SECONDS = 3600  # how often an active worker's TTL is renewed
# A worker's success counts, by minute parity: (minute, successes, verdicts) fields of its hash.
_STATS_FIELDS = (("m0", "ok0", "n0"), ("m1", "ok1", "n1"))

# KEYS: in-flight set, worker hash. Besides its tokens the set holds one member, '~', scored
# +inf: so the set outlives its last token (Redis drops an empty set, and making it again, with
# its TTL, cost every request to an idle worker), and counts are the members less one.
_ACQUIRE = """
local now = tonumber(ARGV[1])
local h = redis.call('HMGET', KEYS[2], 'ejected_until', 'ejections', 'trial_until', 'kept')
local renew = not h[4] or tonumber(h[4]) < now
local capped = ARGV[4] ~= '0'
if capped or renew then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) end
if capped and redis.call('ZCARD', KEYS[1]) - 1 >= tonumber(ARGV[4]) then return -1 end
if ARGV[5] ~= '1' then
  if h[1] and tonumber(h[1]) > now then return -3 end
  if h[2] and h[2] ~= '0' then
    if h[3] and tonumber(h[3]) > now then return -2 end
    redis.call('HSET', KEYS[2], 'trial_until', ARGV[3], 'trial_token', ARGV[2])
  end
end
-- Two new members: the set is new, and gets its TTL (renewed with the worker's, hourly).
if redis.call('ZADD', KEYS[1], '+inf', '~', ARGV[3], ARGV[2]) == 2 or renew then
  redis.call('EXPIRE', KEYS[1], ARGV[6])
end
if renew then
  redis.call('HSET', KEYS[2], 'kept', now + tonumber(ARGV[7]))
  redis.call('EXPIRE', KEYS[2], ARGV[6])
end
return 1
"""

# KEYS: in-flight set, worker hash, then the hashes of the model's other workers.
# The success counts are two slots in the worker's hash, one per minute parity: slot k holds
# minute ``mk`` (``okk`` of ``nk``; the caller names the three fields of this minute's slot);
# writing a minute into a slot that holds another starts it over. The path of a success, by
# far the most common, runs three commands and converts as few values as it can.
_FINISH = """
local w, token, minute = KEYS[2], ARGV[2], ARGV[12]
redis.call('ZREM', KEYS[1], token)
local h = redis.call('HMGET', w, 'trial_token', 'ewma', 'ewma_at', 'ejected_until', 'ejections', 'fails',
  ARGV[15], ARGV[16], ARGV[17], 'kept')
if h[1] == token then redis.call('HDEL', w, 'trial_token', 'trial_until') end
local outcome = ARGV[3]
if outcome == 'neutral' then return 0 end
local now = tonumber(ARGV[1])
local ok, n = 0, 1
if h[7] == minute then ok, n = tonumber(h[8] or 0), tonumber(h[9] or 0) + 1 end
local renew = not h[10] or tonumber(h[10]) < now
local ewma = tonumber(h[2])
if outcome == 'ok' then
  local latency = tonumber(ARGV[4])
  if ewma ~= nil and latency <= ewma then
    local weight = math.exp(-math.max(now - tonumber(h[3] or now), 0) / tonumber(ARGV[6]))
    latency = ewma * weight + latency * (1 - weight)
  end
  redis.call('HSET', w, 'ewma', latency, 'ewma_at', ARGV[1], ARGV[15], minute, ARGV[16], ok + 1, ARGV[17], n)
  -- Without an ejection on record, fails is all there is to clear (the reason goes with one).
  if h[5] and h[5] ~= '0' then redis.call('HSET', w, 'fails', 0, 'ejections', 0, 'ejected_until', 0, 'reason', '')
  elseif h[6] and h[6] ~= '0' then redis.call('HSET', w, 'fails', 0) end
  if renew then
    redis.call('HSET', w, 'kept', now + tonumber(ARGV[14]))
    redis.call('EXPIRE', w, ARGV[13])
  end
  return 0
end
local set = {ARGV[15], minute, ARGV[16], ok, ARGV[17], n}
if renew then set[#set + 1], set[#set + 2] = 'kept', now + tonumber(ARGV[14]) end
local penalty = math.max(tonumber(ARGV[4]) or 0, tonumber(ARGV[11]))
if ewma == nil or penalty > ewma then
  set[#set + 1], set[#set + 2], set[#set + 3], set[#set + 4] = 'ewma', penalty, 'ewma_at', now
end
local fails, ejections = tonumber(h[6] or 0) + 1, tonumber(h[5] or 0)
set[#set + 1], set[#set + 2] = 'fails', fails
local result = 0
if tonumber(h[4] or 0) <= now and (ejections > 0 or fails >= tonumber(ARGV[7])) then
  local ejected = 0
  for i = 3, #KEYS do
    if tonumber(redis.call('HGET', KEYS[i], 'ejected_until') or 0) > now then ejected = ejected + 1 end
  end
  if ejected >= tonumber(ARGV[10]) then result = 2
  else
    ejections = ejections + 1
    local until_ = now + math.min(tonumber(ARGV[8]) * ejections, tonumber(ARGV[9]))
    set[#set + 1], set[#set + 2], set[#set + 3], set[#set + 4] = 'ejections', ejections, 'ejected_until', until_
    set[#set + 1], set[#set + 2] = 'reason', ARGV[5]
    result = 1
  end
end
redis.call('HSET', w, unpack(set))
if renew then redis.call('EXPIRE', w, ARGV[13]) end
return result
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
redis.call('EXPIRE', KEYS[1], ARGV[2])
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

# The scripts that touch more than one key, and so must keep to one slot (tests check it).
MULTI_KEY_SCRIPTS = ("acquire", "finish", "extend", "take_retry")


def _models_from_registry(worker_ids: Sequence[int]) -> dict[int, str]:
    from registry.models import Worker  # registry's models import this package

    return dict(Worker.objects.filter(pk__in=list(worker_ids)).values_list("pk", "model_name"))


class RedisRoutingState:
    """The state in Redis, shared by every process and host that uses the same Redis."""

    def __init__(
        self,
        *,
        url: str,
        prefix: str,
        clock: Callable[[], float] = time.time,
        models_of: Callable[[Sequence[int]], dict[int, str]] = _models_from_registry,
    ):
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
        # A worker's keys are under its model's hash tag. The router names the model; callers
        # that know only worker ids (the dashboard, probes, the engine scraper) get it from what
        # the router said last, or else from the registry (a worker's model does not change
        # while it is registered, so what is learned once holds).
        self._models_of = models_of
        self._model_of: dict[int, str] = {}

    def _key(self, *parts: object) -> str:
        return ":".join([self._prefix, *map(str, parts)])

    def _model_key(self, model_name: str, *parts: object) -> str:
        return ":".join([f"{{{self._prefix}:{model_name}}}", *map(str, parts)])

    def _model(self, worker_id: int, model_name: str | None) -> str:
        if model_name is not None:
            if self._model_of.get(worker_id) != model_name:
                self._model_of[worker_id] = model_name
            return model_name
        return self._models([worker_id])[worker_id]

    def _models(self, worker_ids: Sequence[int]) -> dict[int, str]:
        resolved = {worker_id: self._model_of.get(worker_id) for worker_id in worker_ids}
        unknown = [worker_id for worker_id, model in resolved.items() if model is None]
        if not unknown:
            return resolved
        try:
            found = self._models_of(unknown)
        except Exception:
            # The registry cannot say now (its database is away): this call reads and writes the
            # keys of no model, and the next one asks again.
            logger.warning("routing state: the models of workers %s could not be read", unknown, exc_info=True)
            return {worker_id: model or "" for worker_id, model in resolved.items()}
        # A worker the registry does not know (removed) has no model: its keys share one tag.
        learned = {worker_id: found.get(worker_id, "") for worker_id in unknown}
        if len(self._model_of) > 100_000:  # removed workers must not grow memory without end
            self._model_of = {}
        self._model_of.update(learned)
        return {**resolved, **learned}

    def worker_keys(self, worker_id: int, model_name: str | None = None) -> tuple[str, str]:
        """The worker's in-flight set and hash."""
        model = self._model(worker_id, model_name)
        return self._model_key(model, "if", worker_id), self._model_key(model, "w", worker_id)

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
        for pattern in (self._key("*"), f"{{{self._prefix}:*"):
            keys = list(self._redis.scan_iter(match=pattern, count=1000))
            if keys:
                self._redis.delete(*keys)

    def snapshot(
        self, worker_ids: Sequence[int], *, model_name: str | None = None, record_request: bool = False
    ) -> dict[int, Traffic]:
        if self._away():
            return self._fallback.snapshot(worker_ids, model_name=model_name, record_request=record_request)
        now = self.clock()
        models = dict.fromkeys(worker_ids, model_name) if model_name else self._models(worker_ids)
        # One round trip, no script: a pipelined read costs Redis a fraction of a script that
        # builds Lua tables from the same replies. The retry budget's request count rides along.
        pipe = self._redis.pipeline(transaction=False)
        budget_key = self._budget_key(model_name) if record_request and model_name else None
        if budget_key:
            pipe.hincrby(budget_key, "requests", 1)
        for worker_id in worker_ids:
            in_flight, worker = self.worker_keys(worker_id, models[worker_id])
            pipe.hgetall(worker)
            pipe.zcount(in_flight, f"({now}", "+inf")
        try:
            replies = pipe.execute()
            if budget_key and replies[0] == 1:
                # A new window (once per window and model, not per request): it must end.
                self._redis.expire(budget_key, settings.MMM_RETRY_BUDGET_WINDOW_SECONDS * 2)
        except self._errors as exc:
            self._unavailable("snapshot", exc)
            return self._fallback.snapshot(worker_ids, model_name=model_name, record_request=record_request)
        redis_breaker.succeeded()
        if budget_key:
            replies = replies[1:]
        minutes = {str(_minute(now)), str(_minute(now) - 1)}
        result = {}
        for index, worker_id in enumerate(worker_ids):
            h, in_flight = replies[index * 2 : index * 2 + 2]
            recent = [fields for fields in _STATS_FIELDS if h.get(fields[0]) in minutes]
            result[worker_id] = Traffic(
                in_flight=max(int(in_flight) - 1, 0),  # '~' is not a request
                latency_ewma_ms=_decayed(float(h["ewma"]), float(h.get("ewma_at", now)), now) if "ewma" in h else None,
                consecutive_failures=int(h.get("fails", 0)),
                ejections=int(h.get("ejections", 0)),
                ejected_until=float(h.get("ejected_until", 0)),
                ejection_reason=h.get("reason", ""),
                cooldown_until=float(h.get("cooldown_until", 0)),
                trial_until=float(h.get("trial_until", 0)),
                recent_ok=sum(int(h.get(ok, 0)) for _, ok, _ in recent),
                recent_total=sum(int(h.get(total, 0)) for _, _, total in recent),
            )
        return result

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
        if self._away():
            return self._fallback.acquire(
                worker_id=worker_id, token=token, hold_until=hold_until, max_inflight=max_inflight, panic=panic
            )
        try:
            reply = self._acquire(
                keys=list(self.worker_keys(worker_id, model_name)),
                args=[
                    repr(self.clock()),
                    token,
                    repr(hold_until),
                    max_inflight or 0,
                    "1" if panic else "0",
                    _KEEP_SECONDS,
                    _RENEW_SECONDS,
                ],
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
        model_name: str | None = None,
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
        minute = _minute(now)
        model = self._model(worker_id, model_name)
        others = [self._model_key(model, "w", other) for other in model_worker_ids if other != worker_id]
        try:
            reply = self._finish(
                keys=[*self.worker_keys(worker_id, model), *others],
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
                    minute,
                    _KEEP_SECONDS,
                    _RENEW_SECONDS,
                    *_STATS_FIELDS[minute % 2],
                ],
            )
        except self._errors as exc:
            self._unavailable("finish", exc)
            return Finished()
        return Finished(ejected=reply == 1, ejection_refused=reply == 2)

    def extend(self, *, worker_id: int, token: str, hold_until: float, model_name: str | None = None) -> None:
        if self._away():
            return self._fallback.extend(worker_id=worker_id, token=token, hold_until=hold_until)
        try:
            self._extend(
                keys=list(self.worker_keys(worker_id, model_name)),
                args=[token, repr(hold_until), repr(self.clock())],
            )
        except self._errors as exc:
            self._unavailable("extend", exc)

    def cool_down(self, *, worker_id: int, seconds: float, model_name: str | None = None) -> None:
        if self._away():
            return self._fallback.cool_down(worker_id=worker_id, seconds=seconds)
        try:
            self._cool_down(
                keys=[self.worker_keys(worker_id, model_name)[1]], args=[repr(self.clock() + seconds), _KEEP_SECONDS]
            )
        except self._errors as exc:
            self._unavailable("cool_down", exc)

    def readmit(self, *, worker_id: int, model_name: str | None = None) -> None:
        try:
            self._redis.hdel(
                self.worker_keys(worker_id, model_name)[1],
                "ejected_until",
                "ejections",
                "fails",
                "trial_until",
                "trial_token",
                "reason",
            )
        except self._errors as exc:
            self._unavailable("readmit", exc)

    def round_robin_pick(self, *, group: str, weights: dict[int, int]) -> int:
        if self._away():
            return self._fallback.round_robin_pick(group=group, weights=weights)
        args = [value for worker_id, weight in weights.items() for value in (worker_id, weight)]
        try:
            return int(self._round_robin(keys=[self._model_key(group, "rr")], args=args))
        except self._errors as exc:
            self._unavailable("round_robin", exc)
            return self._fallback.round_robin_pick(group=group, weights=weights)

    def _budget_key(self, model_name: str) -> str:
        window = int(self.clock() // settings.MMM_RETRY_BUDGET_WINDOW_SECONDS)
        return self._model_key(model_name, "budget", window)

    def budget_take_retry(self, *, model_name: str, token: str, hold_until: float) -> bool:
        if self._away():
            return self._fallback.budget_take_retry(model_name=model_name, token=token, hold_until=hold_until)
        try:
            return bool(
                self._take_retry(
                    keys=[self._budget_key(model_name), self._model_key(model_name, "retrying")],
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
            self._redis.zrem(self._model_key(model_name, "retrying"), token)
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
            # GETs in a pipeline rather than one MGET: each worker's key may be in its own slot.
            pipe = self._redis.pipeline(transaction=False)
            for worker_id in worker_ids:
                pipe.get(self._key("eng", worker_id))
            replies = pipe.execute()
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
