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


def test_the_engine_strategies_always_choose_one_of_the_candidates():
    """Whatever the signals (fresh, stale, missing, adapters), tables and hints: a candidate, never an error."""
    from inference.engine_signals import EngineSignals
    from inference.prefixes import RoutingHints
    from inference.routing_state_local import LocalRoutingState
    from inference.strategies import pick_engine_aware, pick_prefix_aware

    rng = random.Random(13)
    for round_ in range(200):
        state = LocalRoutingState()
        now = state.clock()
        workers = [
            FakeWorker(n, weight=rng.randint(1, 3), sent_model_name=rng.choice(["base", "sql-lora"]))
            for n in range(1, rng.randint(1, 5) + 1)
        ]
        for worker in workers:
            if rng.random() < 0.8:
                age = rng.choice([0.0, 1.0, 5.0])
                signals = EngineSignals(
                    waiting=rng.randint(0, 50),
                    running=rng.randint(0, 50),
                    kv_cache_usage=rng.choice([None, rng.random()]),
                    adapters=tuple(rng.sample(["sql-lora", "chat-lora"], rng.randint(0, 2))),
                    scraped_at=now - age,
                    in_flight_at_scrape=rng.randint(0, 60),
                )
                state.engine_record(worker_id=worker.id, signals=signals)
            if rng.random() < 0.5:
                state.prefix_record(worker_id=worker.id, hashes=["s1", "p1", "p2"][: rng.randint(1, 3)], capacity=8)
        traffic = {
            worker.id: Traffic(in_flight=rng.randint(0, 9), latency_ewma_ms=rng.choice([None, 10.0, 900.0]))
            for worker in workers
        }
        hints = RoutingHints(render=lambda: "x" * rng.choice([0, 300, 5000]), session_key=rng.choice([None, "s"]))
        for pick in (pick_engine_aware, pick_prefix_aware):
            chosen = pick(candidates=workers, traffic=traffic, state=state, rng=rng, group=f"g{round_}", hints=hints)
            assert chosen in workers
