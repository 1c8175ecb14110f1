"""The routing state in shared memory across real processes, forked as gunicorn forks its
workers: what one process changes the others see, and a process that dies (SIGKILL included,
in the middle of a change) leaves no count and no lock behind once the master has cleaned up.
Its semantics in one process are tests/test_routing_state.py's."""

import fcntl
import multiprocessing
import os
import signal
import time

import pytest

from inference import routing_state_memory
from inference.outcomes import Outcome
from inference.routing_state_local import LocalRoutingState
from inference.routing_state_shared import SharedRoutingState
from inference.traffic import Acquired, EjectionPolicy
from tests.waiting import wait_until

POLICY = EjectionPolicy(after_failures=2, base_seconds=30, max_seconds=75, max_percent=50)
WORKERS = [1, 2]
fork = multiprocessing.get_context("fork")

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def memory():
    made = routing_state_memory.create(columns=4)
    yield made
    os.close(made.fd)


def state_in(memory, column: int) -> SharedRoutingState:
    return SharedRoutingState(memory=memory, column=column, fallback=LocalRoutingState())


def take(state, worker_id: int, token: str, *, cap: int | None = None) -> Acquired:
    return state.acquire(
        worker_id=worker_id, token=token, hold_until=time.time() + 60, max_inflight=cap, panic=False, model_name="m"
    )


def fail(state, worker_id: int, token: str):
    take(state, worker_id, token)
    return state.finish(
        worker_id=worker_id,
        token=token,
        outcome=Outcome.FAILED,
        latency_ms=None,
        reason="HTTP 500",
        model_worker_ids=WORKERS,
        policy=POLICY,
        model_name="m",
    )


def in_flight(state, worker_id: int = 1) -> int:
    return state.snapshot([worker_id])[worker_id].in_flight


class Child:
    """A forked process that runs ``work(state, conn)`` over the memory in its own column."""

    def __init__(self, memory, *, column: int, work):
        self.conn, theirs = fork.Pipe()

        def run():
            work(state_in(memory, column), theirs)
            theirs.recv()  # hold on (with whatever it took) until told to end, or killed

        self.process = fork.Process(target=run, daemon=True)
        self.process.start()

    def said(self, *, what: str, timeout: float = 20):
        if not self.conn.poll(timeout):
            raise AssertionError(f"the child process did not say {what} within {timeout} s")
        return self.conn.recv()

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.join(timeout=10)
        assert not self.process.is_alive(), "the child process did not die of SIGKILL"

    def end(self) -> None:
        if self.process.is_alive():
            self.conn.send("end")
            self.process.join(timeout=10)


def test_two_processes_see_each_others_in_flight_requests_and_ejections(memory):
    def requests_and_failures(state, conn):
        for token in ("a", "b"):
            take(state, 1, token)
        fail(state, 2, "f1")
        conn.send(fail(state, 2, "f2").ejected)

    child = Child(memory, column=1, work=requests_and_failures)
    try:
        assert child.said(what="whether its second failure ejected worker 2") is True
        here = state_in(memory, 2)

        assert in_flight(here) == 2
        assert take(here, 1, "third", cap=2) is Acquired.AT_CAPACITY
        assert take(here, 2, "x") is Acquired.EJECTED
        assert here.snapshot([2])[2].ejection_reason == "HTTP 500"
        # Worker 2 is out, and half of two workers may be: worker 1 is kept whatever it does.
        assert fail(here, 1, "g1").ejected is False
        assert fail(here, 1, "g2").ejection_refused
    finally:
        child.end()


def test_a_process_killed_with_requests_in_flight_leaves_no_count_after_the_master_cleans_up(memory):
    def busy(state, conn):
        for token in ("a", "b", "c"):
            take(state, 1, token)
        state.budget_take_retry(model_name="m", token="r", hold_until=time.time() + 60)
        conn.send("taken")

    child = Child(memory, column=1, work=busy)
    child.said(what="that it took three slots and a retry")
    here = state_in(memory, 2)
    take(here, 1, "mine")
    assert in_flight(here) == 4

    child.kill()
    memory.release_column(1)  # what the gunicorn master's child_exit does

    assert in_flight(here) == 1  # this process's own request still counts
    assert memory.m_running[here._model_slot("m", insert=False)] == 0
    assert take(here, 1, "next", cap=2) is Acquired.YES


def test_a_process_killed_while_holding_the_lock_does_not_wedge_the_others(memory):
    def killed_half_way(state, conn):
        # In the middle of an acquire: its column counts the request, the total does not yet.
        memory.__enter__()
        slot = state._worker_slot(1, insert=True)
        memory.w_columns[slot * memory.layout.columns + 1] += 1
        conn.send("holding")
        time.sleep(60)

    child = Child(memory, column=1, work=killed_half_way)
    child.said(what="that it holds the lock")
    assert not _lock_free(memory), "the child should hold the lock"

    child.kill()

    wait_until(lambda: _lock_free(memory), timeout=10, what="the kernel to drop the dead process's lock")
    memory.release_column(1)
    here = state_in(memory, 2)
    assert in_flight(here) == 0
    assert take(here, 1, "after") is Acquired.YES
    assert in_flight(here) == 1


def _lock_free(memory) -> bool:
    """Whether another process could take the memory's lock now (asked of a forked child: a
    process's own record locks never block it)."""
    reader, writer = fork.Pipe(duplex=False)

    def probe():
        try:
            fcntl.lockf(memory.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
            writer.send(True)
        except OSError:
            writer.send(False)

    process = fork.Process(target=probe)
    process.start()
    process.join(timeout=10)
    if not reader.poll(5):
        raise AssertionError("the lock probe process did not answer within 5 s")
    return reader.recv()


def test_a_full_table_sends_the_workers_without_room_to_the_fallback(caplog):
    small = routing_state_memory.create(columns=2, workers=2, models=1)
    fallback = LocalRoutingState()
    state = SharedRoutingState(memory=small, column=1, fallback=fallback)
    try:
        for worker_id in (1, 2, 3):
            assert take(state, worker_id, f"t{worker_id}") is Acquired.YES

        assert {worker_id: seen.in_flight for worker_id, seen in state.snapshot([1, 2, 3]).items()} == {
            1: 1,
            2: 1,
            3: 1,
        }
        assert fallback.snapshot([3])[3].in_flight == 1  # the one without room
        assert state.budget_take_retry(model_name="a", token="r", hold_until=time.time() + 60)
        assert state.budget_take_retry(model_name="b", token="r", hold_until=time.time() + 60)
        assert "table is full" in caplog.text
        assert caplog.text.count("table is full") == 1  # once, not per request
    finally:
        os.close(small.fd)


def test_a_worker_whose_code_expects_another_layout_does_not_use_the_memory(memory, monkeypatch):
    from inference import routing_state_shared

    monkeypatch.setattr(routing_state_memory, "_memory", memory)
    monkeypatch.setattr(routing_state_memory, "_column", 1)
    assert routing_state_shared.shared_routing_state(fallback=LocalRoutingState()) is not None

    monkeypatch.setattr(routing_state_shared, "LAYOUT_VERSION", routing_state_memory.LAYOUT_VERSION + 1)

    assert routing_state_shared.shared_routing_state(fallback=LocalRoutingState()) is None
