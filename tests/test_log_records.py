"""console.log_records turns off only what no configured formatter prints."""

import logging
import logging.handlers
import queue

import pytest

from console import log_records
from console.log_format import JsonFormatter

SWITCHES = tuple(log_records.SWITCHES)


def _stream(formatter: logging.Formatter | None = None) -> logging.Handler:
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    return handler


@pytest.fixture(autouse=True)
def switches():
    """logging's switches as they were, given back after each test."""
    before = {name: getattr(logging, name) for name in SWITCHES}
    try:
        yield
    finally:
        for name, value in before.items():
            setattr(logging, name, value)


def test_the_gateways_formats_turn_every_switch_off():
    plain = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")  # mmm.settings' "plain"
    handlers = [_stream(JsonFormatter()), _stream(plain), _stream()]  # the last: the message alone
    assert log_records.leave_out_unprinted(handlers) == list(SWITCHES)
    record = logging.getLogger("tests.log_records").makeRecord("x", logging.INFO, "f", 0, "hi", None, None)
    assert record.threadName is None and record.process is None and record.processName is None
    assert logging._srcfile is None


@pytest.mark.parametrize(
    "handler",
    [
        logging.handlers.QueueHandler(queue.SimpleQueue()),  # ships the record: who knows what reads it
        _stream(logging.Formatter("%(threadName)s %(funcName)s %(message)s")),
    ],
    ids=["a queue handler", "a stream handler printing the thread and caller"],
)
def test_the_configured_handlers_are_read_by_default(handler):
    logger = logging.getLogger("tests.log_records.configured")
    logger.addHandler(handler)
    try:
        off = log_records.leave_out_unprinted()
    finally:
        logger.removeHandler(handler)
    assert "logThreads" not in off and "_srcfile" not in off
    assert logging.logThreads and logging._srcfile


def test_a_format_that_prints_the_process_keeps_it():
    # gunicorn's own error log format
    off = log_records.leave_out_unprinted(
        [_stream(logging.Formatter("%(asctime)s [%(process)d] [%(levelname)s] %(message)s"))]
    )
    assert "logProcesses" not in off and logging.logProcesses
    assert "_srcfile" in off and logging._srcfile is None


@pytest.mark.parametrize(
    ("fmt", "style", "kept"),
    [
        ("%(filename)s:%(lineno)d %(message)s", "%", "_srcfile"),
        ("{threadName} {message}", "{", "logThreads"),
        ("$funcName $message", "$", "_srcfile"),
    ],
)
def test_each_style_of_format_is_read(fmt, style, kept):
    assert kept not in log_records.leave_out_unprinted([_stream(logging.Formatter(fmt, style=style))])
    assert getattr(logging, kept)


def test_a_formatter_it_cannot_read_keeps_everything():
    class Custom(logging.Formatter):
        def format(self, record):
            return f"{record.funcName}: {record.getMessage()}"

    assert log_records.leave_out_unprinted([_stream(Custom()), _stream(JsonFormatter())]) == []
    assert all(getattr(logging, name) for name in SWITCHES)


def test_a_formatter_that_lists_its_fields_is_believed():
    class Listed(logging.Formatter):
        record_fields = ("message", "thread")

    off = log_records.leave_out_unprinted([_stream(Listed())])
    assert "logThreads" not in off and "_srcfile" in off


def test_djangos_mail_handler_is_known_to_read_no_switched_field():
    from django.utils.log import AdminEmailHandler

    assert log_records.leave_out_unprinted([AdminEmailHandler()]) == list(SWITCHES)


def test_a_handler_that_ships_the_record_keeps_everything():
    shipped = logging.handlers.QueueHandler(queue.SimpleQueue())  # no formatter: who knows what reads it
    assert log_records.leave_out_unprinted([_stream(JsonFormatter()), shipped]) == []
    assert all(getattr(logging, name) for name in SWITCHES)
