"""Writing the request log off the request path: a queue in the process, a flusher beside it.

A request only appends its row to an in-memory queue. A background thread (a greenlet where
gunicorn's gevent worker has patched threading) writes what is queued in one bulk INSERT every
MMM_REQUEST_LOG_FLUSH_SECONDS, or sooner once MMM_REQUEST_LOG_BATCH rows wait, so a slow
database slows the log, never a completion. Under gevent a database driver that does not yield
to other greenlets (SQLite, the default) would hold the worker's whole event loop for the length
of the insert, every request in the process waiting on it: there the flusher hands each write to
a native thread of gevent's thread pool and waits for it cooperatively. (psycopg2, patched by
psycogreen, yields while PostgreSQL works, so its writes stay in the flusher's greenlet.)

The native thread still needs the GIL for the Python half of each statement (building its
parameters), and a pass writes a second's rows at once: on one stretch, the loop's requests ran at
half speed for the length of the pass (tens of milliseconds), a cluster of slow requests once a
second that made the p99 at c=1 (bench/compare.py). So between two statements of a pass the
flusher hands the GIL back for as long as the statement's Python work held it (``GilPacer``;
in a greenlet it yields to the loop instead): the rows take at most half of the process's turns,
in bursts of one statement, and the pass stays one transaction. A clean shutdown (gunicorn's worker_exit hook, or
atexit) writes what is left; a crash loses at most the last interval. While the database is
down rows stay queued, up to MMM_REQUEST_LOG_MAX_QUEUE; past that the newest are dropped and
counted, so memory stays bounded.
"""

import atexit
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import gevent
import gevent.monkey
from django.conf import settings
from django.db import connection, transaction

from console import metrics
from console.models import RequestLog
from mmm import bulk_rows
from mmm.database import background_bound, deadline
from mmm.process import current_pid

logger = logging.getLogger("mmm.request_log")

_native_sleep = gevent.monkey.get_original("time", "sleep")  # releases the GIL, not gevent's loop
# A pause never lasts longer than this, whatever a statement cost (a starved machine, a debugger).
MOST_PAUSE_SECONDS = 0.01


class GilPacer:
    """Called between two statements of a flush in a native thread: sleeps as long as this thread
    has run since the last call (its CPU time, which is what held the GIL), at most
    MOST_PAUSE_SECONDS, so the event loop's thread gets the GIL back for at least as long."""

    def __init__(self) -> None:
        self._mark = time.thread_time()

    def __call__(self) -> None:
        spent = time.thread_time() - self._mark
        _native_sleep(min(spent, MOST_PAUSE_SECONDS))
        self._mark = time.thread_time()


def _yield_to_loop() -> None:
    gevent.sleep(0)


class RequestLogWriter:
    model = RequestLog  # what it writes (usage.ledger writes the usage ledger the same way)
    name = "request log"  # in its log lines
    # Rows whose unique key may already be stored (the ledger's usage_id) are skipped, not failed.
    always_ignore_conflicts = False
    # Whether each batch goes to the database (whose SQLite driver would hold gevent's loop).
    writes_database = True
    # Whether every new row wakes the flusher, not only a full batch (usage.settlement).
    wakes_on_every_row = False

    def __init__(
        self,
        *,
        flush_seconds: float | None = None,
        batch_size: int | None = None,
        max_queue: int | None = None,
        background: bool | None = None,
    ):
        # None reads the setting when first needed (settings may be overridden in tests).
        self._flush_seconds = flush_seconds
        self._batch_size = batch_size
        self._max_queue = max_queue
        self._background = background
        self._queue: deque = deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._flush_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._thread_pid: int | None = None
        self.dropped = 0

    @property
    def flush_seconds(self) -> float:
        return self._flush_seconds if self._flush_seconds is not None else settings.MMM_REQUEST_LOG_FLUSH_SECONDS

    @property
    def batch_size(self) -> int:
        return self._batch_size if self._batch_size is not None else settings.MMM_REQUEST_LOG_BATCH

    @property
    def max_queue(self) -> int:
        return self._max_queue if self._max_queue is not None else settings.MMM_REQUEST_LOG_MAX_QUEUE

    @property
    def background(self) -> bool:
        return self._background if self._background is not None else settings.MMM_REQUEST_LOG_BACKGROUND

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, row) -> None:
        """Queue one row; never blocks and never touches the database."""
        if len(self._queue) >= self.max_queue:
            self.dropped += 1
            metrics.LOG_DROPPED.inc()
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.error(
                    "%s queue is full (%d rows): %d row(s) dropped so far", self.name, self.max_queue, self.dropped
                )
            return
        self._queue.append(row)
        if self.background:
            self._ensure_flusher()
            if self.wakes_on_every_row or len(self._queue) >= self.batch_size:
                self._wake.set()

    def flush(self, *, keep_connection: bool = False, pause: Callable[[], None] | None = None) -> int:
        """Write every queued row now, in batches; return how many were written.

        ``pause`` (the flusher's passes) is called between two statements, within a batch and
        between batches, to give the event loop its turn (the module's docstring).

        Rows a failed write could not store go back to the front of the queue for the next try.
        ``keep_connection`` (the flusher's own passes) leaves the database connection open for
        the next pass while writes succeed: opening one costs more CPU than a small batch's
        insert (SQLite's registers its functions on every connect), and the flusher writes
        several times a second. A failed write closes it, so a broken connection is never kept.
        """
        written = 0
        failed = True
        with self._flush_lock:
            try:
                while self._queue:
                    if written and pause is not None:
                        pause()
                    batch = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
                    try:
                        self.write(batch, pause=pause)
                    except Exception:
                        self._queue.extendleft(reversed(batch))
                        raise
                    written += len(batch)
                failed = False
            finally:
                # Under CONN_MAX_AGE=0 nothing else would close the connection of a caller that
                # runs forever, or drop a broken one after the database restarts.
                if not connection.in_atomic_block and (failed or not keep_connection):
                    connection.close()
        return written

    def write(self, batch: list, *, pause: Callable[[], None] | None = None) -> None:
        """Store one batch of rows (or raise, and they are tried again); ``pause`` between statements."""
        # A savepoint of its own: a refused batch leaves a caller's transaction usable.
        with deadline(background_bound(), what=f"{self.name} write"), transaction.atomic():
            # A row that has an id was inserted by a try whose commit may have happened unheard
            # (the connection broke on the way back): it must not be written twice, nor fail
            # its batch for ever (bulk_rows writes it with its id, skipped if taken).
            bulk_rows.insert(
                self.model,
                batch,
                ignore_conflicts=self.always_ignore_conflicts,
                using=self.model.objects.db,
                between_statements=pause,
            )

    def discard(self) -> int:
        """Drop every queued row unwritten; return how many (for tests)."""
        with self._flush_lock:
            count = len(self._queue)
            self._queue.clear()
        return count

    def close(self) -> None:
        """Stop the flusher and write what is left (gunicorn's worker_exit, atexit)."""
        self._stopping.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread() and self._thread_pid == current_pid():
            thread.join(timeout=max(self.flush_seconds, 1) * 5)
        if self._queue:
            try:
                written = self.flush()
                logger.info("%s: wrote %d row(s) at shutdown", self.name, written)
            except Exception:
                logger.exception("%s: %d row(s) could not be written at shutdown", self.name, len(self._queue))

    def _flush_off_the_loop(self) -> int:
        """flush(), in a native thread when this flusher is a greenlet and the driver would block."""
        if not gevent.monkey.is_module_patched("threading"):
            return self.flush(keep_connection=True)  # a real thread (manage.py, tests): no loop to wait
        if self.writes_database and connection.vendor == "sqlite":
            return gevent.get_hub().threadpool.apply(self._paced_flush)
        return self.flush(keep_connection=True, pause=_yield_to_loop)

    def _paced_flush(self) -> int:
        return self.flush(keep_connection=True, pause=GilPacer())  # made in the native thread it paces

    def _ensure_flusher(self) -> None:
        # Started on first use: after gunicorn forked this process and gevent patched threading,
        # so the flusher is a greenlet of this process's hub, not a thread of the master.
        if self._thread is not None and self._thread_pid == current_pid():
            return
        with self._start_lock:
            if self._thread is not None and self._thread_pid == current_pid():
                return
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="request-log-flusher", daemon=True)
            self._thread_pid = current_pid()
            self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if self._stopping.is_set():
                return  # close() writes the rest in its own thread
            try:
                self._flush_off_the_loop()
            except Exception as exc:
                logger.error("%s: write failed, %d row(s) kept for the next try: %s", self.name, len(self._queue), exc)
                # A full batch wakes the flusher on every new row; while the database is away
                # the next try waits the interval instead of following each row.
                self._stopping.wait(self.flush_seconds)
                self._wake.clear()


request_log_writer = RequestLogWriter()
atexit.register(request_log_writer.close)
