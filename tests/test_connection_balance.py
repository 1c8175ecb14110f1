"""The bookkeeping behind spreading connections over gunicorn's workers (mmm.connection_balance)."""

from types import SimpleNamespace

import pytest

from mmm import connection_balance


@pytest.fixture
def shared():
    connection_balance.share(slots=3)
    yield
    connection_balance._counts = None
    connection_balance._slot = None


def test_a_worker_ahead_of_the_least_busy_one_by_more_than_the_slack_waits(shared):
    first, second = SimpleNamespace(), SimpleNamespace()
    connection_balance.assign(first, live_workers=[])
    connection_balance.assign(second, live_workers=[first])
    assert (first.connection_slot, second.connection_slot) == (0, 1)

    connection_balance.start_counting(first)  # as if this process were the first worker
    for _ in range(connection_balance.SLACK + 1):
        connection_balance.opened()
    assert connection_balance.ahead_of_the_others()

    connection_balance.closed()
    assert not connection_balance.ahead_of_the_others()


def test_a_dead_workers_slot_neither_counts_nor_stays_taken(shared):
    first, second = SimpleNamespace(), SimpleNamespace()
    connection_balance.assign(first, live_workers=[])
    connection_balance.assign(second, live_workers=[first])
    connection_balance.start_counting(second)
    for _ in range(5):
        connection_balance.opened()

    connection_balance.release(first)  # it exited: its 0 connections are no one's
    assert not connection_balance.ahead_of_the_others()

    replacement = SimpleNamespace()
    connection_balance.assign(replacement, live_workers=[second])
    assert replacement.connection_slot == 0
    assert connection_balance.ahead_of_the_others()  # the new worker holds none yet


def test_without_shared_counts_a_worker_never_waits():
    worker = SimpleNamespace()
    connection_balance.assign(worker, live_workers=[])
    connection_balance.start_counting(worker)
    connection_balance.opened()
    assert not connection_balance.ahead_of_the_others()
