"""The routing state's semantics, the same for the in-process state, the Redis one and the one in
the memory a host's gunicorn processes share."""

import os
import tempfile
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings

from inference import routing_state_memory
from inference.engine_signals import EngineSignals
from inference.host_state import HostRoutingState, StateServer
from inference.outcomes import Outcome
from inference.routing_state import FAILURE_LATENCY_MS, Acquired, EjectionPolicy
from inference.routing_state_local import LocalRoutingState
from inference.routing_state_redis import RedisRoutingState
from inference.routing_state_shared import SharedRoutingState

POLICY = EjectionPolicy(after_failures=3, base_seconds=30, max_seconds=75, max_percent=50)
WORKERS = [1, 2, 3, 4]
MODEL = "m"
PREFIX = "mmm:test-state"


def model_of(worker_ids):
    """The registry's answer for the workers of these tests (there is no database here)."""
    return dict.fromkeys(worker_ids, MODEL)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def host_state_path():
    """A host-state server on a unix socket, in a thread: what a shared state's other calls ask."""
    path = str(Path(tempfile.mkdtemp(prefix="mmm-test-state-")) / "state.sock")
    server = StateServer(path)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield path
    server.shutdown()
    thread.join(timeout=5)
    server.close()


@pytest.fixture(params=["local", "shared", pytest.param("redis", marks=pytest.mark.redis)])
def state(request):
    clock = Clock()
    if request.param == "local":
        yield LocalRoutingState(clock=clock)
        return
    if request.param == "shared":
        host = HostRoutingState(path=request.getfixturevalue("host_state_path"), timeout=2.0)
        memory = routing_state_memory.create(columns=4)
        yield SharedRoutingState(memory=memory, column=1, fallback=host, clock=clock)
        os.close(memory.fd)
        return
    redis_state = RedisRoutingState(url=settings.REDIS_URL, prefix=PREFIX, clock=clock, models_of=model_of)
    redis_state.reset()
    yield redis_state
    redis_state.reset()


def take(state, worker_id=1, token="t", *, cap=None, panic=False, hold=60.0):
    return state.acquire(
        worker_id=worker_id,
        token=token,
        hold_until=state.clock() + hold,
        max_inflight=cap,
        panic=panic,
        model_name=MODEL,
    )


def finish(state, worker_id=1, token="t", outcome=Outcome.OK, latency_ms=10.0, reason="HTTP 500"):
    return state.finish(
        worker_id=worker_id,
        token=token,
        outcome=outcome,
        latency_ms=latency_ms,
        reason=reason,
        model_worker_ids=WORKERS,
        policy=POLICY,
        model_name=MODEL,
    )


def fail(state, worker_id=1, times=1):
    result = None
    for n in range(times):
        assert take(state, worker_id, f"f{n}") is Acquired.YES
        result = finish(state, worker_id, f"f{n}", Outcome.FAILED)
    return result


def traffic(state, worker_id=1):
    return state.snapshot([worker_id])[worker_id]


def test_in_flight_counts_every_request_until_it_finishes_however_it_ends(state):
    for token in "abc":
        assert take(state, token=token) is Acquired.YES
    assert traffic(state).in_flight == 3

    finish(state, token="a", outcome=Outcome.OK)
    finish(state, token="b", outcome=Outcome.FAILED)
    finish(state, token="c", outcome=Outcome.NEUTRAL)  # cancelled by its client

    assert traffic(state).in_flight == 0


def test_in_flight_is_exact_under_concurrent_requests(state):
    started = threading.Barrier(50)
    peak = []

    def request(n: int) -> None:
        assert take(state, token=f"r{n}") is Acquired.YES
        started.wait(timeout=10)
        peak.append(traffic(state).in_flight)
        started.wait(timeout=10)
        finish(state, token=f"r{n}")

    with ThreadPoolExecutor(50) as pool:
        list(pool.map(request, range(50)))

    assert set(peak) == {50}
    assert traffic(state).in_flight == 0


def test_a_capacity_cap_admits_exactly_that_many_at_once(state):
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda n: take(state, token=f"r{n}", cap=5), range(40)))

    assert Counter(results) == {Acquired.YES: 5, Acquired.AT_CAPACITY: 35}


def test_a_request_of_a_process_that_died_stops_counting_after_its_deadline(state):
    take(state, token="orphan", hold=30)
    assert traffic(state).in_flight == 1

    state.clock.now += 31

    assert traffic(state).in_flight == 0
    assert take(state, token="next", cap=1) is Acquired.YES


def test_consecutive_failures_eject_and_a_success_in_between_resets_them(state):
    fail(state, times=2)
    take(state, token="ok")
    finish(state, token="ok", outcome=Outcome.OK)
    fail(state, times=2)
    assert not traffic(state).is_ejected(state.clock())

    result = fail(state)

    seen = traffic(state)
    assert result.ejected
    assert seen.ejected_until == pytest.approx(state.clock() + 30, abs=0.01)
    assert seen.ejection_reason == "HTTP 500"
    assert take(state, token="x") is Acquired.EJECTED


def test_neutral_outcomes_do_not_count_as_failures(state):
    for n in range(5):
        take(state, token=f"n{n}")
        finish(state, token=f"n{n}", outcome=Outcome.NEUTRAL)

    assert traffic(state).consecutive_failures == 0
    assert traffic(state).recent_total == 0


def test_after_an_ejection_one_trial_request_is_let_through(state):
    fail(state, times=3)
    state.clock.now += 31

    assert traffic(state).is_half_open(state.clock())
    assert take(state, token="trial") is Acquired.YES
    assert take(state, token="second") is Acquired.TRIAL_TAKEN
    finish(state, token="trial", outcome=Outcome.OK)

    seen = traffic(state)
    assert (seen.ejections, seen.consecutive_failures) == (0, 0)
    assert take(state, token="free again") is Acquired.YES


def test_a_failed_trial_ejects_again_for_longer_up_to_the_cap(state):
    fail(state, times=3)
    durations = []
    for _ in range(3):
        state.clock.now = traffic(state).ejected_until + 1
        assert take(state, token="trial") is Acquired.YES
        assert finish(state, token="trial", outcome=Outcome.FAILED).ejected
        durations.append(round(traffic(state).ejected_until - state.clock()))

    assert durations == [60, 75, 75]  # 30 s x 2, x 3 capped at 75 s


def test_at_most_half_of_a_models_workers_are_ejected_at_once(state):
    assert fail(state, 1, times=3).ejected
    assert fail(state, 2, times=3).ejected

    third = fail(state, 3, times=3)

    assert not third.ejected and third.ejection_refused
    assert not traffic(state, 3).is_ejected(state.clock())


def test_panic_mode_may_use_an_ejected_worker(state):
    fail(state, times=3)

    assert take(state, token="panic", panic=True) is Acquired.YES


def test_a_readmitted_worker_is_back_at_once(state):
    fail(state, times=3)

    state.readmit(worker_id=1)

    seen = traffic(state)
    assert not seen.is_ejected(state.clock()) and not seen.is_half_open(state.clock())
    assert take(state, token="x") is Acquired.YES


def test_a_cooldown_lasts_its_time_and_never_shortens(state):
    state.cool_down(worker_id=1, seconds=10)
    state.cool_down(worker_id=1, seconds=2)

    assert traffic(state).cooldown_until == pytest.approx(state.clock() + 10, abs=0.01)
    state.clock.now += 10.5
    assert not traffic(state).is_cooling(state.clock())


def test_latency_is_a_peak_ewma(state):
    take(state, token="a")
    finish(state, token="a", latency_ms=50)
    take(state, token="b")
    finish(state, token="b", latency_ms=500)
    assert traffic(state).latency_ewma_ms == pytest.approx(500)  # a slower sample counts at once

    state.clock.now += settings.MMM_LATENCY_DECAY_SECONDS  # one decay time later, weight 1/e
    take(state, token="c")
    finish(state, token="c", latency_ms=50)

    assert traffic(state).latency_ewma_ms == pytest.approx(50 + 450 / 2.718281828, rel=1e-3)


def test_the_latency_of_a_worker_without_requests_fades_so_it_gets_tried_again(state):
    take(state, token="a")
    finish(state, token="a", latency_ms=500)

    state.clock.now += 2 * settings.MMM_LATENCY_DECAY_SECONDS

    assert traffic(state).latency_ewma_ms == pytest.approx(500 / 2.718281828**2, rel=1e-3)


def test_success_rate_counts_recent_verdicts(state):
    for n, outcome in enumerate([Outcome.OK, Outcome.OK, Outcome.OK, Outcome.FAILED]):
        take(state, token=str(n))
        finish(state, token=str(n), outcome=outcome)

    assert traffic(state).success_rate == pytest.approx(0.75)
    state.clock.now += 200
    assert traffic(state).success_rate is None


def test_the_success_rate_counts_this_minute_and_the_one_before_only(state):
    def verdict(outcome):
        take(state, token="t")
        finish(state, token="t", outcome=outcome)

    state.clock.now -= state.clock.now % 60  # the start of a minute
    verdict(Outcome.OK)
    state.clock.now += 60
    verdict(Outcome.FAILED)
    assert traffic(state).success_rate == pytest.approx(0.5)

    state.clock.now += 60  # the first minute is now too old to count, and its place is reused
    assert traffic(state).recent_total == 1
    verdict(Outcome.OK)
    assert (traffic(state).recent_ok, traffic(state).recent_total) == (1, 2)


def test_round_robin_is_smooth_and_weighted(state):
    picks = [state.round_robin_pick(group="m", weights={1: 5, 2: 1, 3: 1}) for _ in range(7)]

    assert picks == [1, 1, 2, 1, 3, 1, 1]


def test_round_robin_honours_weights_under_concurrent_picks(state):
    with ThreadPoolExecutor(16) as pool:
        picks = list(pool.map(lambda _: state.round_robin_pick(group="m", weights={1: 3, 2: 2, 3: 1}), range(600)))

    assert Counter(picks) == {1: 300, 2: 200, 3: 100}


def test_each_group_has_its_own_round_robin(state):
    assert [state.round_robin_pick(group="x", weights={1: 1, 2: 1}) for _ in range(2)] == [1, 2]
    assert state.round_robin_pick(group="other", weights={2: 1, 1: 1}) == 2


def test_the_retry_budget_allows_a_share_of_requests_or_a_few_running_retries(state, settings):
    settings.MMM_RETRY_BUDGET_RATIO = 0.2
    settings.MMM_RETRY_BUDGET_MIN = 3
    for _ in range(20):
        state.snapshot([1], model_name="m", record_request=True)
    state.snapshot([1], model_name="m")  # a second look of the same request counts nothing

    # 20 requests allow 4 retries by ratio; after that only while fewer than 3 are running.
    granted = [state.budget_take_retry(model_name="m", token=f"r{n}", hold_until=state.clock() + 60) for n in range(10)]
    assert granted == [True] * 4 + [False] * 6

    for n in range(4):
        state.budget_release_retry(model_name="m", token=f"r{n}")
    granted = [state.budget_take_retry(model_name="m", token=f"s{n}", hold_until=state.clock() + 60) for n in range(5)]
    assert granted == [True, True, True, False, False]

    assert state.budget_take_retry(model_name="other", token="o", hold_until=state.clock() + 60)


def test_without_redis_requests_go_on_with_this_process_state(caplog):
    from tests.gateway_process import free_port

    away = RedisRoutingState(
        url=f"redis://127.0.0.1:{free_port()}/0", prefix="mmm:away", clock=Clock(), models_of=model_of
    )

    assert take(away) is Acquired.YES
    assert traffic(away).in_flight == 1  # counted in this process while Redis is away
    assert not finish(away).ejected
    assert traffic(away).in_flight == 0
    assert [away.round_robin_pick(group="m", weights={1: 1, 2: 1}) for _ in range(2)] == [1, 2]
    assert away.budget_take_retry(model_name="m", token="r", hold_until=0)
    assert "routing state in Redis unavailable" in caplog.text


def test_a_kept_request_counts_until_its_new_time_and_a_finished_one_is_not_revived(state):
    take(state, token="stream", hold=30)
    state.extend(worker_id=1, token="stream", hold_until=state.clock() + 600)
    state.extend(worker_id=1, token="gone", hold_until=state.clock() + 600)  # never taken, or finished

    state.clock.now += 100

    assert traffic(state).in_flight == 1
    finish(state, token="stream")
    assert traffic(state).in_flight == 0


def test_a_kept_trial_stays_the_only_trial(state):
    fail(state, times=3)
    state.clock.now += 31
    assert take(state, token="trial", hold=30) is Acquired.YES
    state.extend(worker_id=1, token="trial", hold_until=state.clock() + 600)

    state.clock.now += 100

    assert take(state, token="another") is Acquired.TRIAL_TAKEN


def test_a_failure_counts_as_a_slow_answer_so_a_fast_failing_worker_is_not_preferred(state):
    take(state, token="a")
    finish(state, token="a", latency_ms=2.0)
    take(state, token="b")
    finish(state, token="b", outcome=Outcome.FAILED, latency_ms=1.0)

    assert traffic(state).latency_ewma_ms == pytest.approx(FAILURE_LATENCY_MS, rel=1e-3)


# --- Engine signals and prefix tables (engine_aware, prefix_aware) --------------------------


def test_engine_signals_are_kept_per_worker(state):
    signals = EngineSignals(waiting=3, running=2, kv_cache_usage=0.5, adapters=("a",), scraped_at=state.clock())

    state.engine_record(worker_id=1, signals=signals)

    assert state.engine_read([1, 2]) == {1: signals}


def test_one_claim_per_worker_per_interval(state):
    assert state.engine_claim(worker_id=1, seconds=60) is True
    assert state.engine_claim(worker_id=1, seconds=60) is False
    assert state.engine_claim(worker_id=2, seconds=60) is True


def test_a_prefix_table_matches_a_chain_from_its_first_block(state):
    state.prefix_record(worker_id=1, hashes=["a", "b", "c"], capacity=100)

    matched = state.prefix_match(worker_ids=[1, 2], hashes=["a", "b", "x", "c"])

    assert matched == {1: 2, 2: 0}


def test_a_full_prefix_table_forgets_the_least_recently_used_chain_and_keeps_chain_starts(state):
    state.prefix_record(worker_id=1, hashes=["old1", "old2"], capacity=3)
    state.clock.now += 1
    state.prefix_record(worker_id=1, hashes=["new1", "new2"], capacity=3)

    matched = state.prefix_match(worker_ids=[1], hashes=["old1", "old2"])[1]
    assert matched == 1  # the old chain lost its deepest block first, never its start
    assert state.prefix_match(worker_ids=[1], hashes=["new1", "new2"])[1] == 2
