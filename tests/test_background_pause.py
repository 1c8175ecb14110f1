"""mmm.background's pause between rounds: until the next job is due, within a tick and a second."""

import pytest

from mmm.background import pause_seconds


@pytest.mark.parametrize(
    ("due", "now", "pause"),
    [
        ([10.4, 12.0], 10.0, 0.4),  # the earliest job's time, not the next tick's
        ([10.0, 10.01], 10.0, 0.05),  # due now or nearly: one tick, never a busy loop
        ([5.0, 7.0], 10.0, 0.05),  # all overdue (the breaker is open): one tick
        ([300.0, 400.0], 10.0, 1.0),  # far off: at most a second
    ],
)
def test_the_loop_sleeps_until_its_next_job_within_a_tick_and_a_second(due, now, pause):
    assert pause_seconds(due, now=now) == pytest.approx(pause)
