"""The one way a test waits for something to happen: with a deadline, failing with what it waited for."""

import time

# Polling this often costs nothing measurable and notices a change within a few milliseconds.
_POLL_SECONDS = 0.01


def wait_until(condition, *, timeout: float, what: str, poll: float = _POLL_SECONDS):
    """Call ``condition`` until it returns something truthy and return that, or fail the test
    after ``timeout`` seconds saying ``what`` it waited for and the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}; last saw {value!r}")
        time.sleep(poll)
