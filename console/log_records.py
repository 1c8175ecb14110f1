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


# Handlers without a formatter that use the record in a way known here, as the fields they read.
KNOWN_HANDLER_FIELDS = {
    AdminEmailHandler: ("levelname", "message", "exc_info", "request", "status_code"),  # Django's default
}


def leave_out_unprinted(handlers: list[logging.Handler] | None = None) -> list[str]:
    """Turn off the switches whose fields none of ``handlers`` (by default every configured
    handler) prints; the names turned off."""
    printed = set()
    for handler in _configured_handlers() if handlers is None else handlers:
        fields = _fields_read_by(handler)
        if fields is None:
            return []
        printed.update(fields)
    off = []
    for switch, fields in SWITCHES.items():
        if not printed.intersection(fields):
            setattr(logging, switch, None if switch == "_srcfile" else False)
            off.append(switch)
    return off


def _configured_handlers() -> set[logging.Handler]:
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    return {handler for logger in loggers for handler in getattr(logger, "handlers", ())}


def _fields_read_by(handler: logging.Handler) -> tuple[str, ...] | set[str] | None:
    """The record fields a handler prints, or None when that cannot be told."""
    formatter = handler.formatter
    if formatter is None:
        if isinstance(handler, logging.StreamHandler | logging.NullHandler):
            return ()  # logging's default format: the message alone
        return next((fields for kind, fields in KNOWN_HANDLER_FIELDS.items() if isinstance(handler, kind)), None)
    declared = getattr(formatter, "record_fields", None) or KNOWN_FIELDS.get(type(formatter))
    if declared is not None:
        return declared
    if type(formatter) is not logging.Formatter:
        return None
    fmt = formatter._style._fmt  # the format string as its style (%, { or $) spells it
    return {field for fields in SWITCHES.values() for field in fields if field in fmt}
