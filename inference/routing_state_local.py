"""The routing state in this process, under a lock: right for one process (``make serve``),
and what the Redis implementation routes with while Redis is away."""

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from django.conf import settings

from inference.engine_signals import EngineSignals
from inference.outcomes import Outcome
from inference.traffic import (
    FAILURE_LATENCY_MS,
    Acquired,
    EjectionPolicy,
    Finished,
    Traffic,
    _decayed,
    _minute,
    _peak_ewma,
)


class LocalRoutingState:
    """The state in this process only: exact for one process, which is what it is used for."""

    def __init__(self, *, clock: Callable[[], float] = time.time):
        self.clock = clock
        self._lock = threading.Lock()
        self._workers: dict[int, dict] = {}
        self._in_flight: dict[int, dict[str, float]] = {}
        # Per worker, the success counts of two minutes, one slot per minute parity (as in Redis):
        # [minute, ok, total]; writing a minute into a slot that holds another starts it over.
        self._stats: dict[int, list[list[int]]] = {}
        self._rr: dict[str, dict[int, int]] = {}
        self._budget: dict[tuple[str, int], list[int]] = {}
        self._retries: dict[str, dict[str, float]] = {}  # retries running now, by model
        self._engines: dict[int, EngineSignals] = {}
        self._engine_claims: dict[int, float] = {}
        # Per worker, prefix block hashes in order of last use (oldest first): an LRU table.
        self._prefixes: dict[int, OrderedDict[str, None]] = {}

    def reset(self) -> None:
        with self._lock:
            for store in (
                self._workers,
                self._in_flight,
                self._stats,
                self._rr,
                self._budget,
                self._retries,
                self._engines,
                self._engine_claims,
                self._prefixes,
            ):
                store.clear()

    def _live_tokens(self, worker_id: int, now: float) -> dict[str, float]:
        tokens = self._in_flight.setdefault(worker_id, {})
        for token in [t for t, until in tokens.items() if until <= now]:
            del tokens[token]
        return tokens

    def snapshot(
        self, worker_ids: Sequence[int], *, model_name: str | None = None, record_request: bool = False
    ) -> dict[int, Traffic]:
        if record_request and model_name is not None:
            self._record_request(model_name=model_name)
        now = self.clock()
        minute = _minute(now)
        result = {}
        with self._lock:
            for worker_id in worker_ids:
                h = self._workers.get(worker_id, {})
                ok = total = 0
                for slot_minute, slot_ok, slot_total in self._stats.get(worker_id, ()):
                    if slot_minute in (minute, minute - 1):
                        ok += slot_ok
                        total += slot_total
                result[worker_id] = Traffic(
                    in_flight=len(self._live_tokens(worker_id, now)),
                    latency_ewma_ms=_decayed(h.get("ewma"), h.get("ewma_at", now), now),
                    consecutive_failures=h.get("fails", 0),
                    ejections=h.get("ejections", 0),
                    ejected_until=h.get("ejected_until", 0.0),
                    ejection_reason=h.get("reason", ""),
                    cooldown_until=h.get("cooldown_until", 0.0),
                    trial_until=h.get("trial_until", 0.0),
                    recent_ok=ok,
                    recent_total=total,
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
        now = self.clock()
        with self._lock:
            tokens = self._live_tokens(worker_id, now)
            if max_inflight and len(tokens) >= max_inflight:
                return Acquired.AT_CAPACITY
            h = self._workers.setdefault(worker_id, {})
            if not panic:
                if h.get("ejected_until", 0.0) > now:
                    return Acquired.EJECTED
                if h.get("ejections", 0) > 0:
                    if h.get("trial_until", 0.0) > now:
                        return Acquired.TRIAL_TAKEN
                    h["trial_until"] = hold_until
                    h["trial_token"] = token
            tokens[token] = hold_until
            return Acquired.YES

    def extend(self, *, worker_id: int, token: str, hold_until: float, model_name: str | None = None) -> None:
        """Keep a running request's token (and its trial, if it is one) until ``hold_until``."""
        with self._lock:
            tokens = self._in_flight.get(worker_id, {})
            if token in tokens:
                tokens[token] = max(tokens[token], hold_until)
            h = self._workers.get(worker_id, {})
            if h.get("trial_token") == token:
                h["trial_until"] = max(h.get("trial_until", 0.0), hold_until)

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
        now = self.clock()
        with self._lock:
            self._in_flight.setdefault(worker_id, {}).pop(token, None)
            h = self._workers.setdefault(worker_id, {})
            if h.get("trial_token") == token:
                h.pop("trial_token", None)
                h.pop("trial_until", None)
            verdict = outcome.verdict
            if verdict == "neutral":
                return Finished()
            minute = _minute(now)
            slots = self._stats.setdefault(worker_id, [[0, 0, 0], [0, 0, 0]])
            stats = slots[minute % 2]
            if stats[0] != minute:
                stats[:] = [minute, 0, 0]
            stats[2] += 1
            if verdict == "ok":
                stats[1] += 1
                h["ewma"] = _peak_ewma(
                    h.get("ewma"), h.get("ewma_at", now), latency_ms, now, settings.MMM_LATENCY_DECAY_SECONDS
                )
                h["ewma_at"] = now
                h.update(fails=0, ejections=0, ejected_until=0.0, reason="")
                return Finished()
            # A failure counts as a very slow answer, so a worker that fails fast does not look like
            # the fastest (and win every draw) while it is not, or cannot be, ejected.
            h["ewma"] = max(h.get("ewma") or 0.0, latency_ms or 0.0, FAILURE_LATENCY_MS)
            h["ewma_at"] = now
            h["fails"] = h.get("fails", 0) + 1
            if h.get("ejected_until", 0.0) > now:
                return Finished()  # already out (a request that started before the ejection)
            half_open = h.get("ejections", 0) > 0
            if not half_open and h["fails"] < policy.after_failures:
                return Finished()
            ejected_now = sum(
                1
                for other in model_worker_ids
                if other != worker_id and self._workers.get(other, {}).get("ejected_until", 0.0) > now
            )
            if ejected_now >= policy.allowed(len(model_worker_ids)):
                return Finished(ejection_refused=True)
            h["ejections"] = h.get("ejections", 0) + 1
            h["ejected_until"] = now + policy.duration(h["ejections"])
            h["reason"] = reason[:300]
            return Finished(ejected=True)

    def cool_down(self, *, worker_id: int, seconds: float, model_name: str | None = None) -> None:
        until = self.clock() + seconds
        with self._lock:
            h = self._workers.setdefault(worker_id, {})
            h["cooldown_until"] = max(h.get("cooldown_until", 0.0), until)

    def readmit(self, *, worker_id: int, model_name: str | None = None) -> None:
        with self._lock:
            h = self._workers.setdefault(worker_id, {})
            for name in ("ejected_until", "ejections", "fails", "trial_until", "trial_token", "reason"):
                h.pop(name, None)

    def round_robin_pick(self, *, group: str, weights: dict[int, int]) -> int:
        with self._lock:
            scores = self._rr.setdefault(group, {})
            return _smooth_weighted_pick(scores, weights)

    def _record_request(self, *, model_name: str) -> None:
        key = (model_name, self._window())
        with self._lock:
            if key not in self._budget and len(self._budget) > 10_000:
                # Ended windows must not grow memory without end; only this window is read.
                window = key[1]
                self._budget = {k: v for k, v in self._budget.items() if k[1] == window}
            self._budget.setdefault(key, [0, 0])[0] += 1

    def budget_take_retry(self, *, model_name: str, token: str, hold_until: float) -> bool:
        key = (model_name, self._window())
        now = self.clock()
        with self._lock:
            counts = self._budget.setdefault(key, [0, 0])
            running = self._retries.setdefault(model_name, {})
            for stale in [t for t, until in running.items() if until <= now]:
                del running[stale]
            if (
                counts[1] >= settings.MMM_RETRY_BUDGET_RATIO * counts[0]
                and len(running) >= settings.MMM_RETRY_BUDGET_MIN
            ):
                return False
            counts[1] += 1
            running[token] = hold_until
            return True

    def budget_release_retry(self, *, model_name: str, token: str) -> None:
        with self._lock:
            self._retries.get(model_name, {}).pop(token, None)

    def engine_claim(self, *, worker_id: int, seconds: float) -> bool:
        now = self.clock()
        with self._lock:
            if self._engine_claims.get(worker_id, 0.0) > now:
                return False
            self._engine_claims[worker_id] = now + seconds
            return True

    def engine_record(self, *, worker_id: int, signals: EngineSignals) -> None:
        with self._lock:
            self._engines[worker_id] = signals

    def engine_read(self, worker_ids: Sequence[int]) -> dict[int, EngineSignals]:
        with self._lock:
            return {worker_id: self._engines[worker_id] for worker_id in worker_ids if worker_id in self._engines}

    def prefix_record(self, *, worker_id: int, hashes: Sequence[str], capacity: int) -> None:
        with self._lock:
            table = self._prefixes.setdefault(worker_id, OrderedDict())
            # Deepest block first, so the chain's first blocks are the most recently used and the
            # last to be evicted: a chain that lost its start could never match again.
            for block in reversed(hashes):
                table[block] = None
                table.move_to_end(block)
            while len(table) > capacity:
                table.popitem(last=False)

    def prefix_match(self, *, worker_ids: Sequence[int], hashes: Sequence[str]) -> dict[int, int]:
        with self._lock:
            return {worker_id: _leading(self._prefixes.get(worker_id, {}), hashes) for worker_id in worker_ids}

    def _window(self) -> int:
        return int(self.clock() // settings.MMM_RETRY_BUDGET_WINDOW_SECONDS)


def _leading(table, hashes: Sequence[str]) -> int:
    """How many of a chain of block hashes, from the first, the table holds."""
    count = 0
    for block in hashes:
        if block not in table:
            break
        count += 1
    return count


def _smooth_weighted_pick(scores: dict[int, int], weights: dict[int, int]) -> int:
    """nginx's smooth weighted round robin: weights 5, 1, 1 give a a b a c a a."""
    total = 0
    best = None
    for worker_id, weight in weights.items():
        total += weight
        scores[worker_id] = scores.get(worker_id, 0) + weight
        if best is None or scores[worker_id] > scores[best]:
            best = worker_id
    scores[best] -= total
    return best
