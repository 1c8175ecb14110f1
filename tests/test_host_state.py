"""The host-local routing and limit state (inference.host_state) over its unix socket, as the
processes of one gunicorn without Redis use it."""

import os
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import pytest

from inference import routing_state_memory
from inference.host_state import HostRoutingState, HostStateUnavailable, StateServer, _State
from inference.outcomes import Outcome
from inference.routing_state_local import LocalRoutingState
from inference.routing_state_shared import SharedRoutingState
from inference.traffic import Acquired, EjectionPolicy, Finished

POLICY = EjectionPolicy(after_failures=2, base_seconds=30, max_seconds=300, max_percent=50)


@pytest.fixture
def server_path():
    with serving() as path:
        yield path


@contextmanager
def serving():
    """A server on a unix socket of its own, in a thread."""
    directory = tempfile.mkdtemp(prefix="mmm-test-state-")
    path = str(Path(directory) / "state.sock")
    server = StateServer(path)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.close()


def client(path: str) -> HostRoutingState:
    return HostRoutingState(path=path, timeout=2.0)


def test_two_clients_share_in_flight_counts_ejections_and_rotation(server_path):
    a, b = client(server_path), client(server_path)
    hold = time.time() + 60

    assert a.acquire(worker_id=1, token="t1", hold_until=hold, max_inflight=1, panic=False) is Acquired.YES
    assert b.acquire(worker_id=1, token="t2", hold_until=hold, max_inflight=1, panic=False) is Acquired.AT_CAPACITY
    assert b.snapshot([1])[1].in_flight == 1
    a.finish(
        worker_id=1, token="t1", outcome=Outcome.OK, latency_ms=5.0, reason="", model_worker_ids=[1, 2], policy=POLICY
    )
    assert b.snapshot([1])[1].in_flight == 0

    for client_ in (a, b):
        client_.acquire(worker_id=2, token="f", hold_until=hold, max_inflight=None, panic=False)
        finished = client_.finish(
            worker_id=2,
            token="f",
            outcome=Outcome.FAILED,
            latency_ms=None,
            reason="500",
            model_worker_ids=[1, 2],
            policy=POLICY,
        )
    assert finished.ejected
    assert a.snapshot([2])[2].is_ejected(time.time())

    picks = [(a if n % 2 else b).round_robin_pick(group="m", weights={1: 1, 2: 1}) for n in range(4)]
    assert picks == [1, 2, 1, 2]  # one rotation over both clients


def test_requests_counted_by_any_client_make_one_retry_budget(server_path, settings):
    settings.MMM_RETRY_BUDGET_RATIO = 0.2
    settings.MMM_RETRY_BUDGET_MIN = 0
    settings.MMM_RETRY_BUDGET_WINDOW_SECONDS = 3600  # the test does not straddle two windows
    a, b = client(server_path), client(server_path)
    for looking in (a, b) * 5:  # ten requests, each counted on its first look
        looking.snapshot([1], model_name="m", record_request=True)
        looking.snapshot([1], model_name="m")  # a second look counts nothing

    granted = [b.budget_take_retry(model_name="m", token=f"r{n}", hold_until=time.time() + 60) for n in range(3)]

    assert granted == [True, True, False]  # 20% of ten, over both clients


class AsBeforeTheChange(_State):
    """The server's answers before 2026-12-01 (dicts, and the request count a call of its own),
    as a master started then keeps answering workers that a SIGHUP reload gave new code."""

    def call(self, method: str, args: dict):
        if method == "snapshot":
            return [[worker_id, asdict(seen)] for worker_id, seen in self.routing.snapshot(args["worker_ids"]).items()]
        if method == "budget_record_request":
            return self.routing.snapshot([], model_name=args["model_name"], record_request=True) and None
        answer = super().call(method, args)
        return asdict(Finished(*answer)) if method == "finish" else answer


def test_a_server_started_before_this_code_is_still_understood(server_path, settings):
    settings.MMM_RETRY_BUDGET_WINDOW_SECONDS = 3600  # the test does not straddle two windows
    directory = tempfile.mkdtemp(prefix="mmm-test-state-")
    server = StateServer(str(Path(directory) / "state.sock"))
    server.state = AsBeforeTheChange()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        new = client(server.path)
        hold = time.time() + 60
        new.acquire(worker_id=1, token="t", hold_until=hold, max_inflight=None, panic=False, model_name="m")

        seen = new.snapshot([1], model_name="m", record_request=True)[1]
        finished = new.finish(
            worker_id=1,
            token="t",
            outcome=Outcome.FAILED,
            latency_ms=None,
            reason="500",
            model_worker_ids=[1, 2],
            policy=POLICY,
            model_name="m",
        )

        assert seen.in_flight == 1
        assert finished == Finished(ejected=False, ejection_refused=False)
        assert server.state.routing._budget == {("m", server.state.routing._window()): [1, 0]}
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.close()


def test_the_rate_count_is_one_window_for_every_client(server_path):
    a, b = client(server_path), client(server_path)
    counts = [(a if n % 2 else b).rate_count(key="ratelimit:abc")[0] for n in range(6)]
    assert counts == [1, 2, 3, 4, 5, 6]


def test_without_its_server_a_process_routes_on_its_own_state_and_limits_are_unavailable(tmp_path):
    away = client(str(tmp_path / "nobody.sock"))

    assert (
        away.acquire(worker_id=1, token="t", hold_until=time.time() + 60, max_inflight=None, panic=False)
        is Acquired.YES
    )
    assert away.snapshot([1])[1].in_flight == 1  # this process's own count
    assert away.breaker.is_open()
    with pytest.raises(HostStateUnavailable):
        away.rate_count(key="ratelimit:abc")


def test_two_clients_share_engine_signals_claims_and_prefix_tables(server_path):
    from inference.engine_signals import EngineSignals

    a, b = client(server_path), client(server_path)
    signals = EngineSignals(waiting=4, running=1, adapters=("sql-lora",), scraped_at=time.time())

    a.engine_record(worker_id=1, signals=signals)
    a.prefix_record(worker_id=1, hashes=["h1", "h2"], capacity=10)

    assert b.engine_read([1, 2]) == {1: signals}
    assert b.prefix_match(worker_ids=[1, 2], hashes=["h1", "h2", "h3"]) == {1: 2, 2: 0}
    assert a.engine_claim(worker_id=1, seconds=60) is True
    assert b.engine_claim(worker_id=1, seconds=60) is False


def test_a_server_given_the_masters_shared_memory_answers_from_it(monkeypatch):
    # As the gunicorn master starts it: what its clients (the engine scraper, a prober) change
    # is what the workers see in the memory, and the other way round.
    memory = routing_state_memory.create(columns=4)
    monkeypatch.setenv("MMM_ROUTING_MEMORY_FD", str(memory.fd))
    worker = SharedRoutingState(memory=memory, column=1, fallback=LocalRoutingState())
    try:
        with serving() as path:
            scraper = client(path)
            assert worker.acquire(worker_id=1, token="w", hold_until=time.time() + 60, max_inflight=None, panic=False)
            assert scraper.snapshot([1])[1].in_flight == 1
            for _ in range(2):
                scraper.finish(
                    worker_id=1,
                    token="scrape",
                    outcome=Outcome.FAILED,
                    latency_ms=None,
                    reason="metrics URL: refused",
                    model_worker_ids=[1, 2],
                    policy=POLICY,
                )
            seen = worker.snapshot([1])[1]
            assert seen.is_ejected(time.time()) and seen.ejection_reason == "metrics URL: refused"

            scraper.readmit(worker_id=1)

            assert not worker.snapshot([1])[1].is_ejected(time.time())
    finally:
        os.close(memory.fd)
