"""A log record measures only what some formatter prints.

For every record Python's logging looks up the thread and its name, the process and its name,
and walks up the stack for the caller's file, line and function. The gateway's formats print
none of these (console.log_format, the "plain" format in mmm.settings); gunicorn's own print the
process id. The caller's walk and the thread's name are about a third of a log call here
(16 -> 10 µs on a slow day, a line per request; `python -m bench.per_request_costs`), and Python's
logging HOWTO ("Optimization") names the switches that leave them out. ``leave_out_unprinted``
turns off each one that no formatter of any configured handler prints. What it cannot read keeps
all of them on: a formatter of a class other than logging.Formatter that does not list
``record_fields``, or a handler without a formatter that is not a stream handler (one that ships
the record itself: a queue, a socket, an exporter). A record then holds None for what it left
out (and a ``stack_info=True`` call gets no stack), as Python's documentation says; a filter that
reads those fields sees None too (none configured here does), and so does a handler added later.
"""

import logging

from django.utils.log import AdminEmailHandler, ServerFormatter

from console.log_format import JsonFormatter

# logging's module switch -> the record attributes it fills.
SWITCHES = {
    "logThreads": ("thread", "threadName"),
    "logProcesses": ("process",),
    "logMultiprocessing": ("processName",),
    "_srcfile": ("pathname", "filename", "module", "lineno", "funcName", "stack_info"),
}
# Formatters that read nothing of these, as the record fields they do read.
KNOWN_FIELDS = {
    JsonFormatter: ("created", "levelname", "name", "message", "exc_info", "fields"),
    ServerFormatter: ("server_time", "message", "status_code"),  # Django's runserver log (configured always)
}


def leave_out_unprinted(formatters: list[logging.Formatter | None] | None = None) -> list[str]:
    """Turn off the switches whose fields none of ``formatters`` (by default those of every
    configured handler) prints; the names turned off."""
    printed = set()
    for formatter in _configured_formatters() if formatters is None else formatters:
        fields = _fields_of(formatter)
        if fields is None:
            return []
        printed.update(fields)
    off = []
    for switch, fields in SWITCHES.items():
        if not printed.intersection(fields):
            setattr(logging, switch, None if switch == "_srcfile" else False)
            off.append(switch)
    return off


_UNREADABLE = object()  # a handler that uses the record some way of its own
# Handlers without a formatter that use the record in a way known here, as the fields they read.
KNOWN_HANDLER_FIELDS = {
    AdminEmailHandler: ("levelname", "message", "exc_info", "request", "status_code"),  # Django's default
}


def _configured_formatters() -> list:
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    handlers = {handler for logger in loggers for handler in getattr(logger, "handlers", ())}
    return [_formatter_of(handler) for handler in handlers]


def _formatter_of(handler: logging.Handler):
    """The handler's formatter, the fields it reads itself, or _UNREADABLE."""
    if handler.formatter is not None or isinstance(handler, logging.StreamHandler | logging.NullHandler):
        return handler.formatter  # (a stream handler without one prints the message alone)
    return next((fields for kind, fields in KNOWN_HANDLER_FIELDS.items() if isinstance(handler, kind)), _UNREADABLE)


def _fields_of(formatter: logging.Formatter | None) -> tuple[str, ...] | set[str] | None:
    """The record fields a formatter prints, or None when that cannot be told."""
    if formatter is _UNREADABLE:
        return None
    if isinstance(formatter, tuple):  # a handler's own, from KNOWN_HANDLER_FIELDS
        return formatter
    if formatter is None:
        return ()  # logging's default: the message alone
    declared = getattr(formatter, "record_fields", None) or KNOWN_FIELDS.get(type(formatter))
    if declared is not None:
        return declared
    if type(formatter) is not logging.Formatter:
        return None
    fmt = formatter._style._fmt  # the format string as its style (%, { or $) spells it
    return {field for fields in SWITCHES.values() for field in fields if field in fmt}
