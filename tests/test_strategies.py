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
