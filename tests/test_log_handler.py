"""console.log_handler: a worker's log lines are written by a thread, in order, none lost."""

import io
import logging

import pytest

from console.log_handler import BackgroundStreamHandler
from tests.waiting import wait_until


@pytest.fixture
def logged():
    stream = io.StringIO()
    handler = BackgroundStreamHandler(stream, flush_seconds=0.02)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"test.log_handler.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield logger, handler, stream
    handler.close_background()
    logger.removeHandler(handler)


def test_outside_a_worker_each_line_is_written_as_it_comes(logged):
    logger, _, stream = logged
    logger.info("one %s", "line")
    assert stream.getvalue() == "INFO one line\n"


def test_in_a_worker_the_thread_writes_the_queued_lines(logged):
    logger, handler, stream = logged
    handler.go_background()
    for number in range(50):
        logger.info("line %d", number)
    wait_until(lambda: stream.getvalue().count("\n") == 50, timeout=10, what="the thread to write 50 queued lines")
    assert stream.getvalue().splitlines() == [f"INFO line {number}" for number in range(50)]


def test_a_warning_is_written_at_once_after_what_was_queued_before_it(logged):
    logger, handler, stream = logged
    handler.flush_seconds = 3600  # the thread would not write these in the test's time
    handler.go_background()
    logger.info("before")
    logger.warning("the worker is failing")
    assert stream.getvalue().splitlines() == ["INFO before", "WARNING the worker is failing"]


def test_arguments_are_read_when_logged_not_when_written(logged):
    logger, handler, stream = logged
    handler.go_background()
    fields = {"status": 200}
    logger.info("request %s", fields)
    fields["status"] = 500
    wait_until(lambda: "request" in stream.getvalue(), timeout=10, what="the line to be written")
    assert stream.getvalue() == "INFO request {'status': 200}\n"


def test_closing_writes_what_is_left_and_stops_the_thread(logged):
    logger, handler, stream = logged
    handler.flush_seconds = 3600
    handler.go_background()
    logger.info("last words")
    handler.close_background()
    assert stream.getvalue() == "INFO last words\n"
    assert not handler._stop.locked()  # released: the thread has ended or will at its next wake


def test_a_full_queue_drops_the_newest_and_says_how_many(logged):
    logger, handler, stream = logged
    handler.flush_seconds = 3600
    handler.max_queue = 3
    handler.go_background()
    for number in range(5):
        logger.info("line %d", number)
    handler.close_background()
    assert stream.getvalue().splitlines() == [
        "INFO line 0",
        "INFO line 1",
        "INFO line 2",
        "log: 2 line(s) dropped, the log stream did not keep up",
    ]
