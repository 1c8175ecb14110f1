"""Budget counters in Redis, exact across every process and host that shares it.

All of one subject's keys (a client key's, or a team's) share one hash tag, so each script
touches one slot and runs on a Redis Cluster too. Times are Redis's own clock (TIME), so the
hosts' clocks never disagree about which day a cost belongs to, and the ledger rows carry the
same instant (reconciliation splits the ledger from Redis by it).

Keys under ``{<prefix>:<subject>}``:
  ``:s:<rule>:<label>``  spent in one period (or rolling slot), expiring after it;
  ``:r:<rule>``          held by reservations in flight;
  ``:res`` (hash)        usage id -> the amounts it holds; ``:lease`` (zset) when each expires;
  ``:done`` (zset)       usage ids settled recently (a second settle is a no-op), and
  ``:u`` (hash)          what each of them charged, for reconciliation;
  ``:seeded``            present once reconciled: missing after a restart that lost the data.

When Redis is away, budgets are checked by this process alone (LocalBudgetStore) and the
ledger keeps every cost; reconciliation brings Redis back to the ledger's figures.
"""

import logging
import time

from django.conf import settings
from redis.exceptions import NoScriptError

from mmm.breaker import redis_breaker
from mmm.redis_client import redis_away_errors, shared_state_redis
from usage import periods
from usage.budget_store import Held, Refused, Settled
from usage.budget_store_local import LocalBudgetStore
from usage.catalog import BudgetRule

logger = logging.getLogger("mmm.usage")

_COMMON = """
local base = KEYS[1]
local function now_s()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function num(x) return string.format('%.0f', x) end
local function month_of(t)
  local z = math.floor(t / 86400) + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y * 12 + m - 1
end
local function month_start(index)
  local y, m = math.floor(index / 12), index % 12 + 1
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + math.floor((153 * mp + 2) / 5)
  return (era * 146097 + doe - 719468) * 86400
end
local function slot_of(window) return math.max(60, math.ceil(window / 60)) end
-- (label of the counter a cost goes to now, spent in the current period, when it resets)
local function period_of(id, kind, window, t)
  if kind == 'd' then
    local day = math.floor(t / 86400)
    local label = 'd' .. day
    return label, tonumber(redis.call('GET', base .. ':s:' .. id .. ':' .. label) or 0), (day + 1) * 86400
  elseif kind == 'm' then
    local index = month_of(t)
    local label = 'm' .. index
    return label, tonumber(redis.call('GET', base .. ':s:' .. id .. ':' .. label) or 0), month_start(index + 1)
  end
  local slot = slot_of(window)
  local current = math.floor(t / slot)
  local count = math.ceil(window / slot)
  local keys = {}
  for number = current - count + 1, current do keys[#keys + 1] = base .. ':s:' .. id .. ':w' .. number end
  local values = redis.call('MGET', unpack(keys))
  local spent, resets = 0, nil
  for i, value in ipairs(values) do
    if value then
      spent = spent + tonumber(value)
      if resets == nil and tonumber(value) > 0 then resets = (current - count + i) * slot + window end
    end
  end
  return 'w' .. current, spent, resets or t
end
local function ttl_of(kind, window)
  if kind == 'd' then return 172800 elseif kind == 'm' then return 2851200 end
  return window + slot_of(window) + 3600
end
local function release(rid)
  local held = redis.call('HGET', base .. ':res', rid)
  if held then
    for id, amount in pairs(cjson.decode(held)) do redis.call('DECRBY', base .. ':r:' .. id, amount) end
    redis.call('HDEL', base .. ':res', rid)
  end
  redis.call('ZREM', base .. ':lease', rid)
end
-- Holds whose lease ran out belong to requests whose process died: give their room back.
local function release_expired(t)
  for _, expired in ipairs(redis.call('ZRANGEBYSCORE', base .. ':lease', '-inf', t, 'LIMIT', 0, 100)) do
    release(expired)
  end
end
"""

# ARGV: usage id, lease seconds, rule count, then per rule: id, kind, window, limit, amount.
_RESERVE = (
    _COMMON
    + """
local rid, lease, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = now_s()
release_expired(t)
local seeded = redis.call('EXISTS', base .. ':seeded')
if redis.call('HEXISTS', base .. ':res', rid) == 1 or redis.call('ZSCORE', base .. ':done', rid) then
  return {1, '', '0', 0, seeded}
end
for i = 0, n - 1 do
  local o = 4 + i * 5
  local id, kind, window, limit, amount = ARGV[o], ARGV[o + 1], tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3]), tonumber(ARGV[o + 4])
  local _, spent, resets = period_of(id, kind, window, t)
  local used = spent + tonumber(redis.call('GET', base .. ':r:' .. id) or 0)
  if used + amount > limit then return {0, id, num(math.max(limit - used, 0)), math.ceil(resets), seeded} end
end
local held = {}
for i = 0, n - 1 do
  local o = 4 + i * 5
  local id, amount = ARGV[o], ARGV[o + 4]
  redis.call('INCRBY', base .. ':r:' .. id, amount)
  redis.call('EXPIRE', base .. ':r:' .. id, math.ceil(lease) + 86400)
  held[id] = tonumber(amount)
end
redis.call('HSET', base .. ':res', rid, cjson.encode(held))
redis.call('ZADD', base .. ':lease', t + lease, rid)
redis.call('EXPIRE', base .. ':res', math.ceil(lease) + 86400)
redis.call('EXPIRE', base .. ':lease', math.ceil(lease) + 86400)
return {1, '', '0', 0, seeded}
"""
)

_RELEASE = (
    _COMMON
    + """
release(ARGV[1])
return 1
"""
)

# ARGV: usage id, seconds a settled id is remembered, rule count, then per rule: id, kind, window, amount.
_SETTLE = (
    _COMMON
    + """
local rid, memory, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = now_s()
local result = {0, string.format('%.6f', t)}
if redis.call('ZSCORE', base .. ':done', rid) then
  release(rid)
  return result
end
release(rid)
local charged = {}
for i = 0, n - 1 do
  local o = 4 + i * 4
  local id, kind, window, amount = ARGV[o], ARGV[o + 1], tonumber(ARGV[o + 2]), ARGV[o + 3]
  local label = period_of(id, kind, window, t)
  local key = base .. ':s:' .. id .. ':' .. label
  if tonumber(amount) > 0 then
    redis.call('INCRBY', key, amount)
    redis.call('EXPIRE', key, ttl_of(kind, window))
    charged[#charged + 1] = {id, label, tonumber(amount)}
  end
  local _, spent = period_of(id, kind, window, t)
  result[#result + 1] = num(spent)
end
result[1] = 1
redis.call('ZADD', base .. ':done', t, rid)
redis.call('HSET', base .. ':u', rid, cjson.encode(charged))
for _, old in ipairs(redis.call('ZRANGEBYSCORE', base .. ':done', '-inf', t - memory, 'LIMIT', 0, 200)) do
  redis.call('HDEL', base .. ':u', old)
  redis.call('ZREM', base .. ':done', old)
end
redis.call('EXPIRE', base .. ':done', math.ceil(memory) + 3600)
redis.call('EXPIRE', base .. ':u', math.ceil(memory) + 3600)
return result
"""
)

# ARGV: cutoff, counter count, then per counter: id, label, ttl, ledger amount.
_RECONCILE = (
    _COMMON
    + """
local cutoff, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local since = {}
for _, rid in ipairs(redis.call('ZRANGEBYSCORE', base .. ':done', cutoff, '+inf')) do
  local charged = redis.call('HGET', base .. ':u', rid)
  if charged then
    for _, c in ipairs(cjson.decode(charged)) do
      local name = c[1] .. ':' .. c[2]
      since[name] = (since[name] or 0) + c[3]
    end
  end
end
for i = 0, n - 1 do
  local o = 3 + i * 4
  local id, label, ttl, ledger = ARGV[o], ARGV[o + 1], tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3])
  local value = ledger + (since[id .. ':' .. label] or 0)
  redis.call('SET', base .. ':s:' .. id .. ':' .. label, num(value), 'EX', ttl)
end
redis.call('SET', base .. ':seeded', '1', 'EX', 86400)
return 1
"""
)

_SPENT = (
    _COMMON
    + """
local t = now_s()
release_expired(t)
local result = {}
for i = 0, tonumber(ARGV[1]) - 1 do
  local o = 2 + i * 3
  local _, spent = period_of(ARGV[o], ARGV[o + 1], tonumber(ARGV[o + 2]), t)
  result[#result + 1] = num(spent)
  result[#result + 1] = num(tonumber(redis.call('GET', base .. ':r:' .. ARGV[o]) or 0))
end
return result
"""
)


class RedisBudgetStore:
    def __init__(self, *, url: str, prefix: str):
        self._redis = shared_state_redis(url=url, timeout=settings.MMM_REDIS_TIMEOUT)
        self._prefix = prefix
        # Only "Redis is away" falls back; a script error is a bug and must surface.
        self.errors = redis_away_errors()
        self._reserve = self._redis.register_script(_RESERVE)
        self._release = self._redis.register_script(_RELEASE)
        self._settle = self._redis.register_script(_SETTLE)
        self._reconcile = self._redis.register_script(_RECONCILE)
        self._spent = self._redis.register_script(_SPENT)
        # While Redis is away: this process's own counters, seeded from the ledger.
        self.fallback = LocalBudgetStore()
        self._last_warning = 0.0

    def base(self, subject: str) -> str:
        return "{" + f"{self._prefix}:{subject}" + "}"

    def _away(self, what: str, exc: Exception) -> None:
        redis_breaker.failed(exc)
        if time.monotonic() - self._last_warning > 10:
            self._last_warning = time.monotonic()
            logger.warning("budget counters in Redis unavailable (%s: %s); this process counts alone", what, exc)

    def now(self) -> float:
        if redis_breaker.is_open():
            return self.fallback.now()
        try:
            seconds, micros = self._redis.time()
            return seconds + micros / 1e6
        except self.errors as exc:
            self._away("time", exc)
            return self.fallback.now()

    def reserve(
        self, *, subject: str, usage_id: str, charges: list[tuple[BudgetRule, int]], lease_seconds: float
    ) -> Held | Refused:
        if redis_breaker.is_open():
            return self.fallback.reserve(
                subject=subject, usage_id=usage_id, charges=charges, lease_seconds=lease_seconds
            )
        args: list = [usage_id, lease_seconds, len(charges)]
        for rule, amount in charges:
            args += [rule.id, periods.KIND[rule.period], rule.window_seconds, rule.limit, amount]
        try:
            ok, rule_id, left, resets_at, seeded = self._reserve(keys=[self.base(subject)], args=args)[:5]
        except self.errors as exc:
            self._away("reserve", exc)
            return self.fallback.reserve(
                subject=subject, usage_id=usage_id, charges=charges, lease_seconds=lease_seconds
            )
        redis_breaker.succeeded()
        if not ok:
            return Refused(rule_id=int(rule_id), left=int(left), resets_at=float(resets_at))
        return Held(seeded=bool(seeded))

    def release(self, *, subject: str, usage_id: str) -> None:
        self.fallback.release(subject=subject, usage_id=usage_id)
        if redis_breaker.is_open():
            return
        try:
            self._release(keys=[self.base(subject)], args=[usage_id])
        except self.errors as exc:
            self._away("release", exc)  # the hold's lease drops it

    def settle(self, *, subject: str, usage_id: str, charges: list[tuple[BudgetRule, int]]) -> Settled:
        return self.settle_many([(subject, usage_id, charges)])[0]

    def settle_many(self, items: list[tuple[str, str, list[tuple[BudgetRule, int]]]]) -> list[Settled]:
        """Settle each (subject, usage id, charges) in one round trip: the settle scripts go in one
        pipeline (not a transaction: each script is atomic on its own, and is all a settle needs)."""
        if not redis_breaker.is_open():
            try:
                replies = self._settle_pipelined(items)
            except self.errors as exc:
                self._away("settle", exc)
            else:
                redis_breaker.succeeded()
                settled = []
                for (subject, usage_id, charges), (ok, settled_at, *spent) in zip(items, replies, strict=True):
                    self.fallback.release(subject=subject, usage_id=usage_id)
                    settled.append(
                        Settled(
                            settled_at=float(settled_at),
                            duplicate=not ok,
                            spent={rule.id: int(value) for (rule, _), value in zip(charges, spent, strict=False)},
                        )
                    )
                return settled
        # Counted here alone; the ledger rows carry them, and reconciliation gives them to Redis.
        return [
            self.fallback.settle(subject=subject, usage_id=usage_id, charges=charges)
            for subject, usage_id, charges in items
        ]

    def _settle_pipelined(self, items: list[tuple[str, str, list[tuple[BudgetRule, int]]]]) -> list:
        memory = settings.MMM_USAGE_SETTLED_MEMORY_SECONDS
        calls = []
        for subject, usage_id, charges in items:
            args: list = [usage_id, memory, len(charges)]
            for rule, amount in charges:
                args += [rule.id, periods.KIND[rule.period], rule.window_seconds, amount]
            calls.append((self.base(subject), args))
        # EVALSHA by hand: redis-py's pipeline asks SCRIPT EXISTS first (a round trip of its own).
        pipeline = self._redis.pipeline(transaction=False)
        for key, args in calls:
            pipeline.execute_command("EVALSHA", self._settle.sha, 1, key, *args)
        replies = pipeline.execute(raise_on_error=False)
        if any(isinstance(reply, NoScriptError) for reply in replies):
            self._redis.script_load(_SETTLE)  # Redis restarted (or flushed its scripts) since
            replies = [
                self._settle(keys=[key], args=args) if isinstance(reply, NoScriptError) else reply
                for (key, args), reply in zip(calls, replies, strict=True)
            ]
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def spent(self, *, subject: str, rules: list[BudgetRule]) -> dict[int, tuple[int, int]]:
        args: list = [len(rules)]
        for rule in rules:
            args += [rule.id, periods.KIND[rule.period], rule.window_seconds]
        try:
            values = self._spent(keys=[self.base(subject)], args=args)
        except self.errors as exc:
            self._away("spent", exc)
            return self.fallback.spent(subject=subject, rules=rules)
        return {rule.id: (int(values[2 * index]), int(values[2 * index + 1])) for index, rule in enumerate(rules)}

    def reconcile(self, *, subject: str, cutoff: float, counters: list[tuple[BudgetRule, str, int]]) -> None:
        args: list = [f"{cutoff:.6f}", len(counters)]
        for rule, label, amount in counters:
            args += [rule.id, label, periods.ttl(period=rule.period, window=rule.window_seconds), amount]
        if redis_breaker.is_open():
            self.fallback.reconcile(subject=subject, cutoff=cutoff, counters=counters)
            return
        try:
            self._reconcile(keys=[self.base(subject)], args=args)
        except self.errors as exc:
            self._away("reconcile", exc)
            self.fallback.reconcile(subject=subject, cutoff=cutoff, counters=counters)

    def settled_ids(self, *, subject: str) -> frozenset[str]:
        if redis_breaker.is_open():
            return self.fallback.settled_ids(subject=subject)
        try:
            return frozenset(self._redis.zrange(self.base(subject) + ":done", 0, -1))
        except self.errors as exc:
            self._away("settled ids", exc)
            return self.fallback.settled_ids(subject=subject)

    def take_reconcile_turn(self, *, seconds: float) -> bool:
        """Whether this process reconciles now: the first to ask in each interval does."""
        try:
            return bool(self._redis.set(f"{self._prefix}:reconcile-turn", "1", nx=True, ex=max(int(seconds * 0.9), 1)))
        except self.errors as exc:
            self._away("reconcile turn", exc)
            return False

    def forget(self, subject: str) -> None:
        """Drop one subject's counters (tests)."""
        keys = list(self._redis.scan_iter(match=self.base(subject).replace("{", "\\{").replace("}", "\\}") + "*"))
        if keys:
            self._redis.delete(*keys)
