"""mmm.command_loop: the looping commands' stop on SIGTERM or SIGINT."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The main thread holds the stop event's own lock when the signal comes, as it does for a moment
# entering or leaving stop.wait(); then it waits on the event, as the loops do.
HELD_LOCK = """
import signal, threading
from mmm.command_loop import stop_on_signals
wake = threading.Event()
stop = stop_on_signals(wake=wake)
with stop._cond:
    signal.raise_signal(signal.{name})  # its handler has run when this returns, inside the lock
print(stop.wait(10), wake.wait(10), flush=True)
"""


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_signal_while_the_loop_holds_the_events_lock_still_stops_it(name):
    try:
        done = subprocess.run(
            [sys.executable, "-c", HELD_LOCK.format(name=name)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"waited 30 s for the loop to stop after a {name} that came while it held the event's lock")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"], done.stdout
