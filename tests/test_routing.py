import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from inference.routing import RoutingTable
from tests.waiting import wait_until


@dataclass
class FakeWorker:
    id: int
    model_name: str
    weight: int = 1


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Registry:
    """Stands in for the database: a list of workers and a count of queries."""

    def __init__(self, *workers: FakeWorker) -> None:
        self.workers = list(workers)
        self.queries: list[str | None] = []

    def load(self, model_name: str | None) -> list[FakeWorker]:
        self.queries.append(model_name)
        return [w for w in self.workers if model_name is None or w.model_name == model_name]


def loaded_table(*workers: FakeWorker) -> tuple[RoutingTable, Registry, Clock]:
    """A table that has done its first load of ``workers``, with its registry and clock."""
    registry, clock = Registry(*workers), Clock()
    table = RoutingTable(loader=registry.load, clock=clock)
    table.workers_for(workers[0].model_name)
    return table, registry, clock


def database_down(model_name):
    raise ConnectionError("database down")


@pytest.fixture
def refresh_every_second(settings):
    settings.MMM_ROUTING_REFRESH_SECONDS = 1.0


def test_the_table_is_not_reloaded_on_every_request(refresh_every_second):
    registry, clock = Registry(FakeWorker(1, "a")), Clock()
    table = RoutingTable(loader=registry.load, clock=clock)

    for _ in range(100):
        assert [w.id for w in table.workers_for("a")] == [1]

    assert registry.queries == [None]


def test_changes_show_up_after_the_refresh_interval(refresh_every_second):
    table, registry, clock = loaded_table(FakeWorker(1, "a"))

    registry.workers.append(FakeWorker(2, "a"))
    clock.now += 0.5
    assert [w.id for w in table.workers_for("a")] == [1]
    clock.now += 0.6
    assert [w.id for w in table.workers_for("a")] == [1, 2]


def test_an_unknown_model_is_looked_up_at_once(refresh_every_second):
    table, registry, clock = loaded_table(FakeWorker(1, "a"))

    registry.workers.append(FakeWorker(2, "b"))

    assert [w.id for w in table.workers_for("b")] == [2]
    assert registry.queries == [None, "b"]


def test_an_unknown_name_is_looked_up_again_by_each_later_request(refresh_every_second):
    registry, clock = Registry(FakeWorker(1, "a")), Clock()
    table = RoutingTable(loader=registry.load, clock=clock)

    assert table.workers_for("typo") is None
    assert table.workers_for("typo") is None
    registry.workers.append(FakeWorker(2, "typo"))  # registered through another host

    assert [w.id for w in table.workers_for("typo")] == [2]
    assert registry.queries == [None, "typo", "typo", "typo"]


def test_requests_waiting_for_the_same_unknown_name_share_one_query(refresh_every_second):
    table, registry, clock = loaded_table(FakeWorker(1, "a"))
    release = threading.Event()
    started = threading.Event()

    def slow_load(model_name):
        started.set()
        release.wait(5)
        return registry.load(model_name)

    table._loader = slow_load
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(table.workers_for, "typo")  # its lookup is under way...
        started.wait(5)
        waiting = [pool.submit(table.workers_for, "typo") for _ in range(5)]  # ...when these arrive
        wait_until(lambda: table._lookups["typo"].waiters == 5, timeout=10, what="five requests to wait on the lookup")
        release.set()
        results = [first.result(timeout=10), *(future.result(timeout=10) for future in waiting)]

    assert results == [None] * 6
    # The first lookup began before the five arrived, so they need one more, which they share.
    assert registry.queries == [None, "typo", "typo"]


def test_a_slow_lookup_does_not_hold_up_other_names(refresh_every_second):
    table, registry, clock = loaded_table(FakeWorker(1, "a"), FakeWorker(2, "b"))
    table._by_model.pop("b")  # as if "b" was registered after the last reload
    release = threading.Event()

    def slow_for_typo(model_name):
        if model_name == "typo":
            release.wait(5)
        return registry.load(model_name)

    table._loader = slow_for_typo
    with ThreadPoolExecutor(2) as pool:
        stuck = pool.submit(table.workers_for, "typo")
        assert [w.id for w in pool.submit(table.workers_for, "b").result(timeout=2)] == [2]
        release.set()
        assert stuck.result(timeout=10) is None


def test_a_failed_lookup_is_an_error_for_the_requests_that_shared_it(refresh_every_second):
    table, registry, clock = loaded_table(FakeWorker(1, "a"))
    table._loader = database_down
    with pytest.raises(ConnectionError):
        table.workers_for("typo")


def test_an_invalidation_during_a_reload_forces_another_reload(refresh_every_second):
    table, registry, clock = loaded_table(FakeWorker(1, "a"))
    clock.now += 2

    def load_then_see_an_offline_call_land(model_name):
        rows = registry.load(model_name)
        registry.workers.clear()
        table.invalidate()  # the offline call in another greenlet, after the rows were read
        return rows

    table._loader = load_then_see_an_offline_call_land
    assert [w.id for w in table.workers_for("a")] == [1]
    table._loader = registry.load

    assert table.workers_for("a") is None


def test_invalidate_forces_a_reload(refresh_every_second):
    table, registry, clock = loaded_table(FakeWorker(1, "a"))
    registry.workers.clear()

    table.invalidate()

    assert table.workers_for("a") is None


def test_a_failed_reload_keeps_serving_the_previous_table(refresh_every_second):
    table, registry, clock = loaded_table(FakeWorker(1, "a"))
    table._loader = database_down
    clock.now += 5

    assert [w.id for w in table.workers_for("a")] == [1]
