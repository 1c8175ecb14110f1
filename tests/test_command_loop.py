"""mmm.command_loop: the looping commands' stop on SIGTERM or SIGINT, and the connection they keep."""

import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection, connections

from accounts.models import ApiKey
from mmm.command_loop import KeptConnection

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


# --- The connection a looping command keeps between passes ---------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def a_pass() -> None:
    ApiKey.objects.exists()  # any query opens the connection when it is closed


@pytest.mark.django_db
def test_the_connection_is_kept_from_one_pass_to_the_next_while_passes_succeed():
    kept = KeptConnection(max_age=60, clock=Clock())
    kept.before_pass()
    a_pass()
    opened = connection.connection
    kept.after_pass()
    kept.before_pass()
    a_pass()
    assert opened is not None and connection.connection is opened


# Django never closes the in-memory SQLite database of the tests: PostgreSQL shows the drop.
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_failed_pass_drops_the_connection():
    kept = KeptConnection(max_age=60, clock=Clock())
    kept.before_pass()
    a_pass()
    kept.after_pass(failed=True)
    assert connection.connection is None
    a_pass()  # the next pass opens a new one


# Django never closes the in-memory SQLite database of the tests: PostgreSQL shows the drop.
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_connection_older_than_its_age_is_opened_afresh():
    clock = Clock()
    kept = KeptConnection(max_age=60, clock=clock)
    a_pass()
    first = connection.connection
    clock.now += 59
    kept.before_pass()
    assert connection.connection is first
    clock.now += 2
    kept.before_pass()
    a_pass()
    assert connection.connection is not None and connection.connection is not first


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_connection_the_server_ended_between_passes_is_replaced_before_the_next():
    kept = KeptConnection(max_age=60, clock=Clock())
    a_pass()
    first = connection.connection
    with connections["default"].copy().cursor() as other:  # the server ends the session, as a restart would
        other.execute("SELECT pg_terminate_backend(%s)", [first.info.backend_pid])
    kept.before_pass()
    a_pass()  # would raise on the dead connection
    assert connection.connection is not first
