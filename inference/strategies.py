"""Which of a model's available workers gets the next request.

``least_loaded`` is the default, as Finagle and Linkerd balance: two workers drawn at random,
the one with the lower cost wins, the cost being its peak-EWMA latency times (requests in
flight + 1), divided by its weight. A slow or overloaded worker rarely wins a draw but still
takes part in them, so it is noticed when it gets faster. Drawing two rather than scanning
for the minimum keeps many processes that share slightly stale numbers from all piling onto
the same "best" worker at once. Two latency averages within MMM_LATENCY_TIE_RATIO (or 50 ms) of
each other count as equal: between identical workers the difference is noise, and letting noise
decide sent 27 of 28 sequential requests to one of two copies of a model. Equal ones go by
requests in flight, then by rotation.

``engine_aware`` and ``prefix_aware`` also read what the engines say of themselves
(inference.engine_signals, kept fresh by ``manage.py scrape_engines``); where a signal is
missing or stale they are least_loaded, never an error. docs/routing.md says when each helps.
"""

import random
import statistics
from collections.abc import Callable, Sequence

from django.conf import settings

from inference.engine_signals import EngineSignals
from inference.prefixes import NO_HINTS, RoutingHints
from inference.routing_state import RoutingState
from inference.routing_state_local import _smooth_weighted_pick
from inference.traffic import Traffic
from registry.models import Strategy

Pick = Callable[..., object]

# Differences below this many milliseconds are noise whatever the ratio: a GC pause or a busy
# host, never a reason to prefer one copy of a model (whose answers take seconds) to another.
# A peak average keeps such a spike for seconds, so without this one slow answer decided.
_LATENCY_NOISE_MS = 50.0
# Rotation among equal workers, per process: deterministic, so two equal workers alternate.
_rotation_scores: dict[str, dict[int, int]] = {}


def _rotate(group: str, workers: Sequence):
    if len(_rotation_scores) > 10_000:  # random model names must not grow memory without end
        _rotation_scores.clear()
    scores = _rotation_scores.setdefault(group, {})
    chosen = _smooth_weighted_pick(scores, {worker.id: worker.weight for worker in workers})
    return next(worker for worker in workers if worker.id == chosen)


def _similar(a: float, b: float) -> bool:
    low, high = sorted((a, b))
    return high - low <= _LATENCY_NOISE_MS or high <= low * settings.MMM_LATENCY_TIE_RATIO


def pick_least_loaded(*, candidates: Sequence, traffic: dict[int, Traffic], rng: random.Random, group: str = "", **_):
    if len(candidates) == 1:
        return candidates[0]
    known = [traffic[w.id].latency_ewma_ms for w in candidates if traffic[w.id].latency_ewma_ms is not None]
    # A worker with no latency yet is assumed typical, so it gets tried without getting flooded.
    typical = statistics.median(known) if known else 1.0

    def latency(worker) -> float:
        seen = traffic[worker.id].latency_ewma_ms
        return max(seen if seen is not None else typical, 0.001)

    def busy(worker) -> float:
        return traffic[worker.id].in_flight / worker.weight

    def cost(worker) -> float:
        return latency(worker) * (traffic[worker.id].in_flight + 1) / worker.weight

    first, second = rng.sample(list(candidates), 2)
    if busy(first) == busy(second) and _similar(latency(first), latency(second)):
        # Equal by every measure but noise: rotate (by weight, so 3 and 1 get 3 to 1). Only when
        # the in-flight counts are equal too, so a slow worker whose average has faded is not
        # handed request after request while its first is still running.
        return _rotate(group, sorted((first, second), key=lambda worker: worker.id))
    return first if cost(first) <= cost(second) else second


def _two_choices(candidates: Sequence, cost: Callable[[object], float], rng: random.Random):
    if len(candidates) == 1:
        return candidates[0]
    first, second = rng.sample(list(candidates), 2)
    return first if cost(first) <= cost(second) else second


def pick_least_busy(*, candidates: Sequence, traffic: dict[int, Traffic], rng: random.Random, **_):
    return _two_choices(candidates, lambda worker: (traffic[worker.id].in_flight + 1) / worker.weight, rng)


def pick_round_robin(*, candidates: Sequence, state: RoutingState, group: str, **_):
    chosen = state.round_robin_pick(group=group, weights={worker.id: worker.weight for worker in candidates})
    return next(worker for worker in candidates if worker.id == chosen)


def pick_random(*, candidates: Sequence, rng: random.Random, **_):
    return rng.choices(list(candidates), weights=[worker.weight for worker in candidates])[0]


# --- Engine signals ---------------------------------------------------------------------


def _fresh_signals(state: RoutingState, candidates: Sequence) -> dict[int, EngineSignals] | None:
    """Every candidate's engine signals, or None when any is missing or stale (least_loaded then)."""
    signals = state.engine_read([worker.id for worker in candidates])
    now = state.clock()
    stale_after = settings.MMM_ENGINE_SIGNALS_STALE_SECONDS
    if all(
        worker.id in signals and signals[worker.id].is_fresh(now=now, stale_after=stale_after) for worker in candidates
    ):
        return signals
    return None


def expected_load(signals: EngineSignals, seen: Traffic) -> float:
    """Requests ahead of a new one at this engine: those of other clients it last reported (its
    queued and running, less what this gateway had in flight there then), plus this gateway's
    own in flight now, which the shared state counts exactly. So what was sent since the last
    scrape counts at once, and requests arriving between two scrapes do not all pile onto the
    replica that looked idle."""
    from_elsewhere = max(signals.waiting + signals.running - signals.in_flight_at_scrape, 0)
    return from_elsewhere + seen.in_flight


def _engine_cost(worker, signals: EngineSignals, seen: Traffic) -> float:
    # A nearly full KV cache makes the engine queue or preempt, so its queue moves slower.
    cache = signals.kv_cache_usage or 0.0
    return (expected_load(signals, seen) + 1) * (1 + cache) / worker.weight


def _with_adapter(candidates: Sequence, signals: dict[int, EngineSignals]) -> Sequence:
    """The candidates whose engine has the worker's model (a LoRA adapter's name, for a worker
    registered with one as its upstream model) loaded, when there are some."""
    loaded = [worker for worker in candidates if worker.sent_model_name in signals[worker.id].adapters]
    return loaded or candidates


def _lowest(candidates: Sequence, cost: Callable[[object], float], traffic: dict[int, Traffic], group: str):
    """The cheapest candidate; equal ones by requests in flight, then by rotation."""
    best = min(cost(worker) for worker in candidates)
    tied = [worker for worker in candidates if cost(worker) <= best]
    if len(tied) > 1:
        fewest = min(traffic[worker.id].in_flight for worker in tied)
        tied = [worker for worker in tied if traffic[worker.id].in_flight == fewest]
    return tied[0] if len(tied) == 1 else _rotate(group, sorted(tied, key=lambda worker: worker.id))


def pick_engine_aware(
    *, candidates: Sequence, traffic: dict[int, Traffic], state: RoutingState, group: str = "", **kwargs
):
    """The fewest expected waits. The minimum rather than two draws: this gateway's part of the
    load is its in-flight count, shared by every process and exact, so they do not all pile onto
    the worker that looked idle at the last scrape."""
    signals = _fresh_signals(state, candidates) if len(candidates) > 1 else None
    if signals is None:
        return pick_least_loaded(candidates=candidates, traffic=traffic, group=group, **kwargs)
    candidates = _with_adapter(candidates, signals)
    return _lowest(
        candidates, lambda worker: _engine_cost(worker, signals[worker.id], traffic[worker.id]), traffic, group
    )


def prefix_table_capacity(signals: EngineSignals | None) -> int:
    """How many prefix blocks to remember for a worker: as many as its engine's KV cache holds,
    when it says (about four characters a token), else MMM_PREFIX_TABLE_BLOCKS."""
    if signals is not None and signals.cache_tokens:
        return max(16, signals.cache_tokens * 4 // settings.MMM_PREFIX_BLOCK_CHARS)
    return settings.MMM_PREFIX_TABLE_BLOCKS


def pick_prefix_aware(
    *,
    candidates: Sequence,
    traffic: dict[int, Traffic],
    state: RoutingState,
    group: str = "",
    hints: RoutingHints = NO_HINTS,
    **kwargs,
):
    """The worker that most recently got this session, or the longest run of this prompt's
    leading blocks, unless its load is more than MMM_PREFIX_LOAD_GATE above the least loaded
    worker's (the load gate: a cache hit is not worth a long queue); engine_aware otherwise.
    The choice is then noted in the chosen worker's table, as SGLang's router does."""
    chain = hints.prefix_hashes
    session = hints.session_hash
    if len(candidates) == 1 or not (chain or session):
        return pick_engine_aware(candidates=candidates, traffic=traffic, state=state, group=group, **kwargs)
    signals = _fresh_signals(state, candidates)
    if signals is not None:
        candidates = _with_adapter(candidates, signals)
        load = {worker.id: expected_load(signals[worker.id], traffic[worker.id]) for worker in candidates}
    else:
        load = {worker.id: traffic[worker.id].in_flight / worker.weight for worker in candidates}
    ids = [worker.id for worker in candidates]
    matched = state.prefix_match(worker_ids=ids, hashes=[session]) if session else {}
    if not any(matched.values()) and chain:
        matched = state.prefix_match(worker_ids=ids, hashes=chain)
    least = min(load.values())
    within_gate = [w for w in candidates if matched.get(w.id) and load[w.id] - least <= settings.MMM_PREFIX_LOAD_GATE]
    if within_gate:
        longest = max(matched[worker.id] for worker in within_gate)
        chosen = _lowest(
            [worker for worker in within_gate if matched[worker.id] == longest],
            lambda worker: load[worker.id],
            traffic,
            group,
        )
    else:
        chosen = pick_engine_aware(candidates=candidates, traffic=traffic, state=state, group=group, **kwargs)
    state.prefix_record(
        worker_id=chosen.id,
        hashes=[*([session] if session else []), *chain],
        capacity=prefix_table_capacity(signals.get(chosen.id) if signals else None),
    )
    return chosen


STRATEGIES: dict[str, Pick] = {
    Strategy.LEAST_LOADED: pick_least_loaded,
    Strategy.LEAST_BUSY: pick_least_busy,
    Strategy.ROUND_ROBIN: pick_round_robin,
    Strategy.RANDOM: pick_random,
    Strategy.ENGINE_AWARE: pick_engine_aware,
    Strategy.PREFIX_AWARE: pick_prefix_aware,
}
