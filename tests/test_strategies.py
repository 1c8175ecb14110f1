"""The strategies' choices on given traffic, without a request: shares that must hold exactly."""

import random
from collections import Counter
from dataclasses import dataclass

from inference.strategies import pick_least_loaded
from inference.traffic import Traffic


@dataclass(frozen=True)
class FakeWorker:
    id: int
    weight: int = 1
    sent_model_name: str = "llama"


def shares(traffic: dict[int, Traffic], workers, *, picks: int = 28, seed: int = 1) -> Counter:
    rng = random.Random(seed)
    return Counter(
        pick_least_loaded(candidates=workers, traffic=traffic, rng=rng, group=f"test-{seed}").id for _ in range(picks)
    )


def test_two_identical_workers_whose_latency_averages_differ_by_noise_share_alike():
    workers = [FakeWorker(1), FakeWorker(2)]
    # 50 against 68 ms: noise between copies of one model on one kind of machine.
    traffic = {1: Traffic(latency_ewma_ms=50.0), 2: Traffic(latency_ewma_ms=68.0)}

    assert shares(traffic, workers) == {1: 14, 2: 14}


def test_among_equal_latencies_fewer_in_flight_wins():
    workers = [FakeWorker(1), FakeWorker(2)]
    traffic = {1: Traffic(latency_ewma_ms=50.0, in_flight=3), 2: Traffic(latency_ewma_ms=55.0, in_flight=1)}

    assert shares(traffic, workers) == {2: 28}


def test_a_clearly_slower_worker_loses_to_an_idle_fast_one():
    workers = [FakeWorker(1), FakeWorker(2)]
    traffic = {1: Traffic(latency_ewma_ms=50.0), 2: Traffic(latency_ewma_ms=500.0)}

    assert shares(traffic, workers) == {1: 28}


def test_weights_share_the_rotation_between_equal_workers():
    workers = [FakeWorker(1, weight=3), FakeWorker(2, weight=1)]
    traffic = {1: Traffic(latency_ewma_ms=50.0, in_flight=0), 2: Traffic(latency_ewma_ms=50.0, in_flight=0)}

    assert shares(traffic, workers) == {1: 21, 2: 7}


def test_one_slow_answer_among_fast_ones_does_not_lock_a_worker_out():
    workers = [FakeWorker(1), FakeWorker(2)]
    # 5 ms answers, one of them 45 ms (a GC pause): the peak average keeps the 45 for seconds.
    traffic = {1: Traffic(latency_ewma_ms=5.0), 2: Traffic(latency_ewma_ms=45.0)}

    assert shares(traffic, workers) == {1: 14, 2: 14}


def test_engine_aware_counts_this_gateways_requests_in_flight_since_the_scrape():
    from inference.engine_signals import EngineSignals
    from inference.routing_state_local import LocalRoutingState
    from inference.strategies import pick_engine_aware

    state = LocalRoutingState()
    now = state.clock()
    # Both reported 2 running at the last scrape, A's being this gateway's own two.
    state.engine_record(worker_id=1, signals=EngineSignals(running=2, scraped_at=now, in_flight_at_scrape=2))
    state.engine_record(worker_id=2, signals=EngineSignals(running=2, scraped_at=now, in_flight_at_scrape=0))
    workers = [FakeWorker(1), FakeWorker(2)]

    def pick(in_flight_a: int) -> int:
        traffic = {1: Traffic(in_flight=in_flight_a), 2: Traffic(in_flight=0)}
        return pick_engine_aware(candidates=workers, traffic=traffic, state=state, rng=random.Random(1)).id

    assert pick(in_flight_a=0) == 1  # A's two have finished since: A is idle, B has 2 from elsewhere
    assert pick(in_flight_a=5) == 2  # five sent to A since the scrape: B's 2 are fewer
