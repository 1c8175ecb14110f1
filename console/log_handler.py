"""Log lines written by a native thread beside each gunicorn worker, not by the request.

Every request writes one line. Written where it is logged, that is a blocking ``write`` to
gunicorn's stderr in the request's greenlet: the worker's whole event loop waits on it, and on
a pipe that is full (a log shipper that stalls) every request of the process waits. In a
gunicorn worker (``go_background()``, from gunicorn.conf.py's post_worker_init) this handler
instead formats nothing and writes nothing on the request path: it queues the record, and a
native thread (not a greenlet: its blocking write must not hold the loop) formats what is queued
and writes it in one call, ``MMM_LOG_FLUSH_SECONDS`` after the first line of the batch was
queued. While nothing is queued the thread sleeps without a timeout: a thread that woke every
interval to find nothing took the GIL from a busy event loop for nothing (the connection balance
of two fresh workers failed 1 time in 3 that way). A warning or worse is written at
once, after what was queued before it, so the order holds and what explains a crash is out
before it. Elsewhere (management commands, tests, runserver) it writes each line as it comes,
as logging.StreamHandler does. A clean exit (worker_exit, atexit) writes what is left.
"""

import atexit
import logging
from collections import deque

import gevent.monkey

from mmm.process import current_pid

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
        self._stop = _native_lock()  # held while the thread should run; released to stop it
        self._work = _native_lock()  # held while nothing waits; released by the first record queued
        self._background_pid: int | None = None
        _handlers.append(self)

    def go_background(self) -> None:
        """From now on in this process, queue records for the writer thread (started here)."""
        if self._background_pid == current_pid():
            return
        self._queue.clear()  # a parent's queue, inherited by fork, is the parent's to write
        self._background_pid = current_pid()
        # Fresh locks: a parent's, inherited by fork, may be in any state.
        self._write_lock, self._stop, self._work = _native_lock(), _native_lock(), _native_lock()
        self._stop.acquire()
        self._work.acquire()
        _start_native_thread(self._run, ())

    def emit(self, record: logging.LogRecord) -> None:
        if self._background_pid != current_pid():
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
        first = not self._queue
        self._queue.append(record)
        if first:
            self._wake()  # the thread sleeps while nothing waits: an idle worker is never woken

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
        if self._background_pid == current_pid() and self._stop.locked():
            self._stop.release()
            self._wake()
        self.write_queued()

    def _wake(self) -> None:
        try:
            self._work.release()
        except RuntimeError:
            pass  # released already: the thread is on its way

    def _run(self) -> None:
        while True:
            self._work.acquire()  # until a record waits (or close wakes it)
            # Then gather for one interval, so a busy worker's lines go in one write; waiting
            # on the stop lock is that sleep, and its release ends it at once.
            stopping = self._stop.acquire(True, self.flush_seconds)
            try:
                self.write_queued()
            except Exception:
                pass
            if stopping:
                self._stop.release()
                return


def go_background() -> None:
    for handler in _handlers:
        handler.go_background()


def close_all() -> None:
    for handler in _handlers:
        handler.close_background()


atexit.register(close_all)
