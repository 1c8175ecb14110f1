"""Log lines written by a native thread beside each gunicorn worker, not by the request.

Every request writes one line. Written where it is logged, that is a blocking ``write`` to
gunicorn's stderr in the request's greenlet: the worker's whole event loop waits on it, and on
a pipe that is full (a log shipper that stalls) every request of the process waits. In a
gunicorn worker (``go_background()``, from gunicorn.conf.py's post_worker_init) this handler
instead formats nothing and writes nothing on the request path: it queues the record, and a
native thread (not a greenlet: its blocking write must not hold the loop) formats what is queued
and writes it in one call every ``MMM_LOG_FLUSH_SECONDS``. A warning or worse is written at
once, after what was queued before it, so the order holds and what explains a crash is out
before it. Elsewhere (management commands, tests, runserver) it writes each line as it comes,
as logging.StreamHandler does. A clean exit (worker_exit, atexit) writes what is left.
"""

import atexit
import logging
import os
from collections import deque

import gevent.monkey

# The thread primitives as they were before gevent patched them: a native thread and its lock.
_start_native_thread = gevent.monkey.get_original("_thread", "start_new_thread")
_native_lock = gevent.monkey.get_original("_thread", "allocate_lock")

_handlers: list["BackgroundStreamHandler"] = []


class BackgroundStreamHandler(logging.StreamHandler):
    def __init__(self, stream=None, *, flush_seconds: float = 0.05, max_queue: int = 100_000):
        super().__init__(stream)
        self.flush_seconds = flush_seconds
        self.max_queue = max_queue
        self.dropped = 0
        self._queue: deque[logging.LogRecord] = deque()
        self._write_lock = _native_lock()  # one writer at a time: the thread, or an urgent record
        self._stop = _native_lock()
        self._background_pid: int | None = None
        _handlers.append(self)

    def go_background(self) -> None:
        """From now on in this process, queue records for the writer thread (started here)."""
        if self._background_pid == os.getpid():
            return
        self._queue.clear()  # a parent's queue, inherited by fork, is the parent's to write
        self._background_pid = os.getpid()
        if self._stop.locked():
            self._stop.release()
        self._stop.acquire()  # held while the thread runs; released to stop it
        _start_native_thread(self._run, ())

    def emit(self, record: logging.LogRecord) -> None:
        if self._background_pid != os.getpid():
            super().emit(record)
            return
        try:
            # The message's arguments are read now, as they are: the caller may change them later.
            record.msg, record.args = record.getMessage(), None
        except Exception:
            self.handleError(record)
            return
        if record.levelno >= logging.WARNING:
            self._queue.append(record)
            self.write_queued()
            return
        if len(self._queue) >= self.max_queue:
            self.dropped += 1  # a stalled stream must not grow memory without end
            return
        self._queue.append(record)

    def write_queued(self) -> None:
        """Format and write every queued record in one write (the thread's work; also at exit)."""
        with self._write_lock:
            if not self._queue:
                return
            lines = []
            while self._queue:
                record = self._queue.popleft()
                try:
                    lines.append(self.format(record))
                except Exception:
                    self.handleError(record)
            if self.dropped:
                lines.append(f"log: {self.dropped} line(s) dropped, the log stream did not keep up")
                self.dropped = 0
            try:
                self.stream.write(self.terminator.join(lines) + self.terminator)
                # Not self.flush(): it takes the handler's lock, a gevent lock in a gunicorn
                # worker, which a native thread must not wait on.
                self.stream.flush()
            except Exception:
                pass  # nowhere left to say so; logging's own handleError would write to stderr too

    def close_background(self) -> None:
        """Stop the thread and write what is left (gunicorn's worker_exit, atexit)."""
        if self._background_pid == os.getpid() and self._stop.locked():
            self._stop.release()
        self.write_queued()

    def _run(self) -> None:
        # The stop lock is held by the process while the thread should run: waiting on it is
        # the thread's sleep, and its release both wakes and stops it.
        while not self._stop.acquire(True, self.flush_seconds):
            try:
                self.write_queued()
            except Exception:
                pass
        self._stop.release()


def go_background() -> None:
    for handler in _handlers:
        handler.go_background()


def close_all() -> None:
    for handler in _handlers:
        handler.close_background()


atexit.register(close_all)
