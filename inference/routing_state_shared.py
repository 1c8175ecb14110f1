"""The routing state in memory shared by the gunicorn processes of one host, without Redis.

Each request of a seed completion changes the state three times (``snapshot``, ``acquire``,
``finish``). Asked of the host-state server (inference.host_state), that is three round trips
of JSON over a unix socket, about a fifth of the gateway's CPU under load. Here each process
reads and changes the memory the master made before forking (inference.routing_state_memory)
itself, under a lock held for a few microseconds, with LocalRoutingState's semantics: the same
calls give the same answers.

What is not on the hot path stays with the host-state server, through the ``fallback`` this
state holds (a HostRoutingState in a worker): round robin, engine signals, prefix tables. So
does a worker or model that finds the memory's table full (logged once; never a failed request).

In-flight requests: the process that took a slot keeps its token and the time it must end by
(as LocalRoutingState does) in its own dict, and publishes only a count, in its column and in
the worker's total. It gives back its own tokens past their time on its next call; when a
process dies, however, the master clears its column (inference.routing_state_memory.release).
"""

import hashlib
import logging
import math
import time
import zlib
from collections.abc import Sequence

from django.conf import settings

from inference import routing_state_memory
from inference.engine_signals import EngineSignals
from inference.outcomes import Outcome
from inference.routing_state_memory import MODEL_NAME_BYTES, REASON_BYTES, Memory
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

logger = logging.getLogger("mmm.routing")

# The layout this module reads. routing_state_memory.LAYOUT_VERSION is the master's (after a
# SIGHUP reload, a worker has the master's copy of that module, and this one new).
LAYOUT_VERSION = 1
_FULL = -1  # a slot lookup's answer when the table has no room: the fallback keeps that one


def shared_routing_state(*, fallback) -> "SharedRoutingState | None":
    """This worker process's state over the master's memory, if it has the memory and a column,
    and the memory is the layout this code reads."""
    found = routing_state_memory.shared()
    if found is None:
        return None
    memory, column = found
    if memory.buffer[:8] != routing_state_memory.MAGIC or memory.header_q[1] != LAYOUT_VERSION:
        logger.warning(
            "the master's shared routing memory has another layout (a reload after an upgrade): "
            "this process asks the host-state server until the master restarts"
        )
        return None
    return SharedRoutingState(memory=memory, column=column, fallback=fallback)


def _digest(token: str) -> int:
    """The trial's token as one signed 64-bit number (the same in every process, unlike hash())."""
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little", signed=True)


class SharedRoutingState:
    """The RoutingState interface over the host's shared memory (``column`` is this process's)."""

    def __init__(self, *, memory: Memory, column: int, fallback, clock=time.time):
        self.clock = clock
        self._m = memory
        self._column = column
        self._columns = memory.layout.columns
        self._fallback = fallback
        # This process's own tokens, by (slot, token): the time each must have ended by.
        self._tokens: dict[tuple[int, str], float] = {}
        self._retries: dict[tuple[int, str], float] = {}
        self._next_expiry = math.inf  # the earliest of those times: no sweep before it
        self._worker_slots: dict[int, int] = {}  # slots never move but by a reset
        self._model_slots: dict[str, int] = {}
        self._epoch = memory.epoch
        self._full_logged = False

    # --- Under the lock -----------------------------------------------------------------------

    def __enter__(self) -> Memory:
        """``with self as m``: the memory, locked, with this process caught up."""
        self._m.__enter__()
        try:
            self._catch_up(self.clock())
        except BaseException:
            self._m.__exit__()
            raise
        return self._m

    def __exit__(self, *exc) -> None:
        self._m.__exit__()

    def _catch_up(self, now: float) -> None:
        """At the start of every locked step: catch up with a reset, give back what ran out."""
        if self._m.header_q[5] != self._epoch:
            self._tokens.clear()
            self._retries.clear()
            self._worker_slots.clear()
            self._model_slots.clear()
            self._next_expiry = math.inf
            self._epoch = self._m.header_q[5]
        if now >= self._next_expiry:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        m = self._m
        for owned, counts, totals in (
            (self._tokens, m.w_columns, m.w_in_flight),
            (self._retries, m.m_columns, m.m_running),
        ):
            for key in [key for key, until in owned.items() if until <= now]:
                del owned[key]
                self._give_back(counts, totals, key[0])
        self._next_expiry = min(
            min(self._tokens.values(), default=math.inf), min(self._retries.values(), default=math.inf)
        )

    def _take(self, counts, totals, slot: int) -> None:
        counts[slot * self._columns + self._column] += 1
        totals[slot] += 1

    def _give_back(self, counts, totals, slot: int) -> None:
        index = slot * self._columns + self._column
        if counts[index] > 0:  # a count the master already cleared is not taken twice
            counts[index] -= 1
            totals[slot] -= 1

    def _worker_slot(self, worker_id: int, *, insert: bool) -> int | None:
        """The worker's slot; None if it has none (and ``insert`` is false); _FULL if no room."""
        slot = self._worker_slots.get(worker_id)
        if slot is not None:
            return slot
        if worker_id < 0:
            return _FULL
        keys = self._m.w_key
        size = len(keys)
        start = (worker_id * 2654435761) % size  # Knuth's multiplicative hash spreads close ids
        for probe in range(size):
            slot = (start + probe) % size
            key = keys[slot]
            if key == worker_id + 1:
                self._worker_slots[worker_id] = slot
                return slot
            if key == 0:
                if not insert:
                    return None
                keys[slot] = worker_id + 1  # a free slot is all zeros: nothing else to set
                self._worker_slots[worker_id] = slot
                return slot
        self._worker_slots[worker_id] = _FULL
        return _FULL

    def _model_slot(self, model_name: str, *, insert: bool) -> int | None:
        slot = self._model_slots.get(model_name)
        if slot is not None:
            return slot
        name = model_name.encode()
        if not name or len(name) > MODEL_NAME_BYTES:
            return _FULL
        m = self._m
        size = len(m.m_name_len)
        start = zlib.crc32(name) % size
        for probe in range(size):
            slot = (start + probe) % size
            length = m.m_name_len[slot]
            at = slot * MODEL_NAME_BYTES
            if length == len(name) and m.m_name[at : at + length] == name:
                self._model_slots[model_name] = slot
                return slot
            if length == 0:
                if not insert:
                    return None
                m.m_name[at : at + len(name)] = name
                m.m_name_len[slot] = len(name)  # last: the slot is taken once its name is whole
                self._model_slots[model_name] = slot
                return slot
        self._model_slots[model_name] = _FULL
        return _FULL

    def _budget_slot(self, model_name: str, *, insert: bool) -> int | None:
        """The model's slot with this window's counts (an older window's start over)."""
        slot = self._model_slot(model_name, insert=insert)
        if slot is not None and slot != _FULL:
            m, window = self._m, self._window()
            if m.m_window[slot] != window:
                m.m_window[slot] = window
                m.m_requests[slot] = 0
                m.m_retries[slot] = 0
        return slot

    def _traffic(self, slot: int, now: float, minute: int) -> Traffic:
        m = self._m
        ok = total = 0
        if m.w_minute0[slot] in (minute, minute - 1):
            ok += m.w_ok0[slot]
            total += m.w_total0[slot]
        if m.w_minute1[slot] in (minute, minute - 1):
            ok += m.w_ok1[slot]
            total += m.w_total1[slot]
        reason_len = m.w_reason_len[slot]
        reason = ""
        if reason_len:
            at = slot * REASON_BYTES
            reason = bytes(m.w_reason[at : at + reason_len]).decode()
        return Traffic(
            in_flight=m.w_in_flight[slot],
            latency_ewma_ms=_decayed(m.w_ewma[slot], m.w_ewma_at[slot], now) if m.w_has_ewma[slot] else None,
            consecutive_failures=m.w_fails[slot],
            ejections=m.w_ejections[slot],
            ejected_until=m.w_ejected_until[slot],
            ejection_reason=reason,
            cooldown_until=m.w_cooldown_until[slot],
            trial_until=m.w_trial_until[slot],
            recent_ok=ok,
            recent_total=total,
        )

    def _is_trial(self, slot: int, token: str) -> bool:
        return bool(self._m.w_has_trial[slot]) and self._m.w_trial_digest[slot] == _digest(token)

    def _overflowed(self) -> None:
        if not self._full_logged:
            self._full_logged = True
            logger.warning(
                "the shared routing memory's table is full: the workers or models that found no room "
                "are counted by the host-state server"
            )

    # --- The RoutingState interface -----------------------------------------------------------

    def reset(self) -> None:
        with self as m:
            m.clear()
            self._catch_up(self.clock())
        self._fallback.reset()

    def snapshot(
        self, worker_ids: Sequence[int], *, model_name: str | None = None, record_request: bool = False
    ) -> dict[int, Traffic]:
        now = self.clock()
        minute = _minute(now)
        result: dict[int, Traffic] = {}
        elsewhere: list[int] = []
        record_elsewhere = False
        with self as m:
            if record_request and model_name is not None:
                slot = self._budget_slot(model_name, insert=True)
                if slot == _FULL:
                    record_elsewhere = True
                else:
                    m.m_requests[slot] += 1
            for worker_id in worker_ids:
                slot = self._worker_slot(worker_id, insert=False)
                if slot is None:
                    result[worker_id] = Traffic()  # never seen: what LocalRoutingState says of it
                elif slot == _FULL:
                    elsewhere.append(worker_id)
                else:
                    result[worker_id] = self._traffic(slot, now, minute)
        if elsewhere or record_elsewhere:
            self._overflowed()
            result.update(self._fallback.snapshot(elsewhere, model_name=model_name, record_request=record_elsewhere))
            result = {worker_id: result[worker_id] for worker_id in worker_ids}
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
        with self as m:
            slot = self._worker_slot(worker_id, insert=True)
            if slot != _FULL:
                if max_inflight and m.w_in_flight[slot] >= max_inflight:
                    return Acquired.AT_CAPACITY
                if not panic:
                    if m.w_ejected_until[slot] > now:
                        return Acquired.EJECTED
                    if m.w_ejections[slot] > 0:
                        if m.w_trial_until[slot] > now:
                            return Acquired.TRIAL_TAKEN
                        m.w_trial_until[slot] = hold_until
                        m.w_trial_digest[slot] = _digest(token)
                        m.w_has_trial[slot] = 1
                if (slot, token) not in self._tokens:
                    self._take(m.w_columns, m.w_in_flight, slot)
                self._tokens[slot, token] = hold_until
                self._next_expiry = min(self._next_expiry, hold_until)
                return Acquired.YES
        self._overflowed()
        return self._fallback.acquire(
            worker_id=worker_id, token=token, hold_until=hold_until, max_inflight=max_inflight, panic=panic
        )

    def extend(self, *, worker_id: int, token: str, hold_until: float, model_name: str | None = None) -> None:
        """Keep a running request's token (and its trial, if it is one) until ``hold_until``."""
        with self as m:
            slot = self._worker_slot(worker_id, insert=False)
            if slot is None:
                return
            if slot != _FULL:
                if (slot, token) in self._tokens:
                    self._tokens[slot, token] = max(self._tokens[slot, token], hold_until)
                if self._is_trial(slot, token):
                    m.w_trial_until[slot] = max(m.w_trial_until[slot], hold_until)
                return
        self._fallback.extend(worker_id=worker_id, token=token, hold_until=hold_until)

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
        with self:
            slot = self._worker_slot(worker_id, insert=True)
            if slot != _FULL:
                return self._finish(
                    slot=slot,
                    worker_id=worker_id,
                    token=token,
                    verdict=outcome.verdict,
                    latency_ms=latency_ms,
                    reason=reason,
                    model_worker_ids=model_worker_ids,
                    policy=policy,
                    now=now,
                )
        self._overflowed()
        return self._fallback.finish(
            worker_id=worker_id,
            token=token,
            outcome=outcome,
            latency_ms=latency_ms,
            reason=reason,
            model_worker_ids=model_worker_ids,
            policy=policy,
        )

    def _finish(
        self,
        *,
        slot: int,
        worker_id: int,
        token: str,
        verdict: str,
        latency_ms: float | None,
        reason: str,
        model_worker_ids: Sequence[int],
        policy: EjectionPolicy,
        now: float,
    ) -> Finished:
        """LocalRoutingState.finish over the memory (under the lock)."""
        m = self._m
        if self._tokens.pop((slot, token), None) is not None:
            self._give_back(m.w_columns, m.w_in_flight, slot)
        if self._is_trial(slot, token):
            m.w_has_trial[slot] = 0
            m.w_trial_until[slot] = 0.0
        if verdict == "neutral":
            return Finished()
        minute = _minute(now)
        if minute % 2:
            minutes, oks, totals = m.w_minute1, m.w_ok1, m.w_total1
        else:
            minutes, oks, totals = m.w_minute0, m.w_ok0, m.w_total0
        if minutes[slot] != minute:
            minutes[slot], oks[slot], totals[slot] = minute, 0, 0
        totals[slot] += 1
        old = m.w_ewma[slot] if m.w_has_ewma[slot] else None
        if verdict == "ok":
            oks[slot] += 1
            ewma = _peak_ewma(
                old, m.w_ewma_at[slot] if old is not None else now, latency_ms, now, settings.MMM_LATENCY_DECAY_SECONDS
            )
            m.w_has_ewma[slot] = ewma is not None
            m.w_ewma[slot] = ewma or 0.0
            m.w_ewma_at[slot] = now
            m.w_fails[slot] = m.w_ejections[slot] = m.w_reason_len[slot] = 0
            m.w_ejected_until[slot] = 0.0
            return Finished()
        # A failure counts as a very slow answer (see LocalRoutingState.finish).
        m.w_ewma[slot] = max(old or 0.0, latency_ms or 0.0, FAILURE_LATENCY_MS)
        m.w_has_ewma[slot] = 1
        m.w_ewma_at[slot] = now
        m.w_fails[slot] += 1
        if m.w_ejected_until[slot] > now:
            return Finished()  # already out (a request that started before the ejection)
        half_open = m.w_ejections[slot] > 0
        if not half_open and m.w_fails[slot] < policy.after_failures:
            return Finished()
        ejected_now = 0
        for other in model_worker_ids:
            if other != worker_id:
                other_slot = self._worker_slot(other, insert=False)
                if other_slot is not None and other_slot != _FULL and m.w_ejected_until[other_slot] > now:
                    ejected_now += 1
        if ejected_now >= policy.allowed(len(model_worker_ids)):
            return Finished(ejection_refused=True)
        m.w_ejections[slot] += 1
        m.w_ejected_until[slot] = now + policy.duration(m.w_ejections[slot])
        text = reason[:300].encode()
        at = slot * REASON_BYTES
        m.w_reason[at : at + len(text)] = text
        m.w_reason_len[slot] = len(text)
        return Finished(ejected=True)

    def cool_down(self, *, worker_id: int, seconds: float, model_name: str | None = None) -> None:
        until = self.clock() + seconds
        with self as m:
            slot = self._worker_slot(worker_id, insert=True)
            if slot != _FULL:
                m.w_cooldown_until[slot] = max(m.w_cooldown_until[slot], until)
                return
        self._fallback.cool_down(worker_id=worker_id, seconds=seconds)

    def readmit(self, *, worker_id: int, model_name: str | None = None) -> None:
        with self as m:
            slot = self._worker_slot(worker_id, insert=True)
            if slot != _FULL:
                m.w_ejected_until[slot] = m.w_trial_until[slot] = 0.0
                m.w_ejections[slot] = m.w_fails[slot] = m.w_has_trial[slot] = m.w_reason_len[slot] = 0
                return
        self._fallback.readmit(worker_id=worker_id)

    def budget_take_retry(self, *, model_name: str, token: str, hold_until: float) -> bool:
        with self as m:  # (which gives back this process's retries that ran out)
            slot = self._budget_slot(model_name, insert=True)
            if slot != _FULL:
                if (
                    m.m_retries[slot] >= settings.MMM_RETRY_BUDGET_RATIO * m.m_requests[slot]
                    and m.m_running[slot] >= settings.MMM_RETRY_BUDGET_MIN
                ):
                    return False
                m.m_retries[slot] += 1
                if (slot, token) not in self._retries:
                    self._take(m.m_columns, m.m_running, slot)
                self._retries[slot, token] = hold_until
                self._next_expiry = min(self._next_expiry, hold_until)
                return True
        self._overflowed()
        return self._fallback.budget_take_retry(model_name=model_name, token=token, hold_until=hold_until)

    def budget_release_retry(self, *, model_name: str, token: str) -> None:
        with self as m:
            slot = self._model_slot(model_name, insert=False)
            if slot is None:
                return
            if slot != _FULL:
                if self._retries.pop((slot, token), None) is not None:
                    self._give_back(m.m_columns, m.m_running, slot)
                return
        self._fallback.budget_release_retry(model_name=model_name, token=token)

    def _window(self) -> int:
        return int(self.clock() // settings.MMM_RETRY_BUDGET_WINDOW_SECONDS)

    # Off the hot path: the host-state server's.

    def round_robin_pick(self, *, group: str, weights: dict[int, int]) -> int:
        return self._fallback.round_robin_pick(group=group, weights=weights)

    def engine_claim(self, *, worker_id: int, seconds: float) -> bool:
        return self._fallback.engine_claim(worker_id=worker_id, seconds=seconds)

    def engine_record(self, *, worker_id: int, signals: EngineSignals) -> None:
        self._fallback.engine_record(worker_id=worker_id, signals=signals)

    def engine_read(self, worker_ids: Sequence[int]) -> dict[int, EngineSignals]:
        return self._fallback.engine_read(worker_ids)

    def prefix_record(self, *, worker_id: int, hashes: Sequence[str], capacity: int) -> None:
        self._fallback.prefix_record(worker_id=worker_id, hashes=hashes, capacity=capacity)

    def prefix_match(self, *, worker_ids: Sequence[int], hashes: Sequence[str]) -> dict[int, int]:
        return self._fallback.prefix_match(worker_ids=worker_ids, hashes=hashes)

    def rate_count(self, *, key: str) -> tuple[int, float]:
        return self._fallback.rate_count(key=key)
