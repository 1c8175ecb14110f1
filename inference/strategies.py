"""Which of a model's available workers gets the next request.

``least_loaded`` is the default, as Finagle and Linkerd balance: two workers drawn at random,
the one with the lower cost wins, the cost being its peak-EWMA latency times (requests in
flight + 1), divided by its weight. A slow or overloaded worker rarely wins a draw but still
takes part in them, so it is noticed when it gets faster. Drawing two rather than scanning
for the minimum keeps many processes that share slightly stale numbers from all piling onto
the same "best" worker at once.
"""

import random
import statistics
from collections.abc import Callable, Sequence

from inference.routing_state import RoutingState
from inference.traffic import Traffic
from registry.models import Strategy

Pick = Callable[..., object]


def _two_choices(candidates: Sequence, cost: Callable[[object], float], rng: random.Random):
    if len(candidates) == 1:
        return candidates[0]
    first, second = rng.sample(list(candidates), 2)
    return first if cost(first) <= cost(second) else second


def pick_least_loaded(*, candidates: Sequence, traffic: dict[int, Traffic], rng: random.Random, **_):
    known = [traffic[w.id].latency_ewma_ms for w in candidates if traffic[w.id].latency_ewma_ms is not None]
    # A worker with no latency yet is assumed typical, so it gets tried without getting flooded.
    typical = statistics.median(known) if known else 1.0

    def cost(worker) -> float:
        seen = traffic[worker.id]
        latency = seen.latency_ewma_ms if seen.latency_ewma_ms is not None else typical
        return max(latency, 0.001) * (seen.in_flight + 1) / worker.weight

    return _two_choices(candidates, cost, rng)


def pick_least_busy(*, candidates: Sequence, traffic: dict[int, Traffic], rng: random.Random, **_):
    return _two_choices(candidates, lambda worker: (traffic[worker.id].in_flight + 1) / worker.weight, rng)


def pick_round_robin(*, candidates: Sequence, state: RoutingState, group: str, **_):
    chosen = state.round_robin_pick(group=group, weights={worker.id: worker.weight for worker in candidates})
    return next(worker for worker in candidates if worker.id == chosen)


def pick_random(*, candidates: Sequence, rng: random.Random, **_):
    return rng.choices(list(candidates), weights=[worker.weight for worker in candidates])[0]


STRATEGIES: dict[str, Pick] = {
    Strategy.LEAST_LOADED: pick_least_loaded,
    Strategy.LEAST_BUSY: pick_least_busy,
    Strategy.ROUND_ROBIN: pick_round_robin,
    Strategy.RANDOM: pick_random,
}
