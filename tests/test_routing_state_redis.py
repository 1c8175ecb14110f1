"""How the Redis routing state lays out its keys: one hash slot per model (so it can move to
Redis Cluster), TTLs on everything it leaves behind, and the model found for callers that
know only a worker id. The semantics are in test_routing_state.py, over both implementations."""

import pytest
from django.conf import settings
from redis.crc import key_slot

from inference.outcomes import Outcome
from inference.routing_state_redis import MULTI_KEY_SCRIPTS, RedisRoutingState
from inference.traffic import Acquired, EjectionPolicy
from tests.test_routing_state import Clock

pytestmark = pytest.mark.redis

PREFIX = "mmm:test-layout"
POLICY = EjectionPolicy(after_failures=2, base_seconds=30, max_seconds=75, max_percent=50)
MODELS = {1: "llama", 2: "llama", 3: "llama", 4: "llama", 7: "qwen/{odd}name", 8: "qwen/{odd}name"}


class ScriptKeys:
    """Runs a script on the real Redis and notes the keys it was called with."""

    def __init__(self, name: str, script, seen: list):
        self.name, self._script, self._seen = name, script, seen

    def __call__(self, *, keys, args):
        self._seen.append((self.name, list(keys)))
        return self._script(keys=keys, args=args)


@pytest.fixture
def state():
    looked_up: list[list[int]] = []

    def models_of(worker_ids):
        looked_up.append(list(worker_ids))
        return {worker_id: MODELS[worker_id] for worker_id in worker_ids if worker_id in MODELS}

    redis_state = RedisRoutingState(url=settings.REDIS_URL, prefix=PREFIX, clock=Clock(), models_of=models_of)
    redis_state.looked_up = looked_up
    redis_state.reset()
    yield redis_state
    redis_state.reset()


def a_request(state, worker_id, token, outcome, *, model_workers):
    model = MODELS[worker_id]
    state.snapshot(model_workers, model_name=model, record_request=True)
    acquired = state.acquire(
        worker_id=worker_id, token=token, hold_until=state.clock() + 60, max_inflight=10, panic=False, model_name=model
    )
    assert acquired is Acquired.YES
    state.extend(worker_id=worker_id, token=token, hold_until=state.clock() + 120, model_name=model)
    return state.finish(
        worker_id=worker_id,
        token=token,
        outcome=outcome,
        latency_ms=5.0,
        reason="HTTP 500",
        model_worker_ids=model_workers,
        policy=POLICY,
        model_name=model,
    )


def test_every_multi_key_script_touches_one_hash_slot(state):
    seen: list = []
    for name in MULTI_KEY_SCRIPTS:
        setattr(state, f"_{name}", ScriptKeys(name, getattr(state, f"_{name}"), seen))
    llama, qwen = [1, 2, 3, 4], [7, 8]

    for n in range(2):  # worker 1 fails twice and is ejected: finish reads its model's others
        a_request(state, 1, f"a{n}", Outcome.FAILED, model_workers=llama)
    assert a_request(state, 2, "b", Outcome.OK, model_workers=llama) == a_request(
        state, 7, "c", Outcome.FAILED, model_workers=qwen
    )
    assert state.budget_take_retry(model_name="llama", token="r", hold_until=state.clock() + 60)
    assert state.budget_take_retry(model_name="qwen/{odd}name", token="r", hold_until=state.clock() + 60)

    assert {name for name, _ in seen} == set(MULTI_KEY_SCRIPTS)
    assert any(name == "finish" and len(keys) == 5 for name, keys in seen)  # the ejection's look at others
    slots = {name: set() for name in MODELS.values()}
    for name, keys in seen:
        assert len({key_slot(key.encode()) for key in keys}) == 1, (name, keys)
        model = "qwen/{odd}name" if any("qwen" in key for key in keys) else "llama"
        slots[model].add(key_slot(keys[0].encode()))
    assert len(slots["llama"]) == 1 and len(slots["qwen/{odd}name"]) == 1
    assert slots["llama"] != slots["qwen/{odd}name"]


def test_every_key_the_state_writes_has_a_ttl(state):
    a_request(state, 1, "a", Outcome.OK, model_workers=[1, 2])
    state.acquire(worker_id=2, token="running", hold_until=state.clock() + 60, max_inflight=None, panic=False)
    for n in range(2):
        a_request(state, 2, f"f{n}", Outcome.FAILED, model_workers=[1, 2])
    # As the engine scraper does: a verdict on a worker no request has used yet.
    state.finish(
        worker_id=3,
        token="scrape",
        outcome=Outcome.FAILED,
        latency_ms=None,
        reason="unreachable",
        model_worker_ids=[3],
        policy=POLICY,
    )
    state.cool_down(worker_id=4, seconds=5)
    state.budget_take_retry(model_name="llama", token="r", hold_until=state.clock() + 60)
    state.round_robin_pick(group="llama", weights={1: 1, 2: 1})

    keys = sorted(state._redis.scan_iter(match=f"*{PREFIX}*", count=1000))

    assert len(keys) >= 8
    assert {key: state._redis.ttl(key) > 0 for key in keys} == dict.fromkeys(keys, True)


def test_a_caller_that_knows_only_worker_ids_reads_the_workers_model_state(state):
    a_request(state, 7, "a", Outcome.FAILED, model_workers=[7])
    state.looked_up.clear()

    assert state.snapshot([7])[7].consecutive_failures == 1  # what the router wrote, tagged by model
    assert state.looked_up == []  # learned from the router's calls, not asked again

    state.readmit(worker_id=8)  # a probe of a worker the router has not used in this process
    state.readmit(worker_id=8)
    assert state.looked_up == [[8]]
