"""What the looping management commands (probe_workers, run_jobs, deliver_webhooks,
scrape_engines) share: their --loop, --parent-pid and --json arguments, a stop on SIGTERM or
SIGINT, noticing that the gunicorn master that started one beside itself is gone, and the
database connection they keep between passes."""

import _thread
import os
import signal
import threading
import time


def add_loop_arguments(parser, *, keeps: str, beside_gunicorn: bool = True) -> None:
    """--loop ("Keep <keeps> until SIGTERM or SIGINT."), --json, and, for a command the gunicorn
    config starts beside itself, --parent-pid."""
    parser.add_argument("--loop", action="store_true", help=f"Keep {keeps} until SIGTERM or SIGINT.")
    parser.add_argument(
        "--json", action="store_true", dest="as_json", help="Print one JSON object per pass instead of text."
    )
    if beside_gunicorn:
        parser.add_argument(
            "--parent-pid",
            type=int,
            default=None,
            help="With --loop, stop when this process is gone (gunicorn's master, which starts one beside it).",
        )


def stop_on_signals(*, wake: threading.Event | None = None) -> threading.Event:
    """An event set by SIGTERM or SIGINT, so a loop ends after its pass instead of mid-write;
    ``wake``, which the loop may be waiting on, is set with it."""
    stop = threading.Event()

    def set_them() -> None:
        stop.set()
        if wake is not None:
            wake.set()

    def stopped(*_) -> None:
        # Set from a thread of its own, not here: a handler runs in the main thread between two
        # of its bytecodes, possibly while that thread holds the event's lock (entering or
        # leaving stop.wait(), just when a SIGTERM follows a pass's last line), and set() would
        # wait on that lock forever. (The low-level call takes no lock threading's own may hold.)
        _thread.start_new_thread(set_them, ())

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stopped)
    return stop


def parent_gone(parent_pid: int | None) -> bool:
    """Whether the process ``parent_pid`` that started this one has ended (never, for None).

    A child whose parent died is re-parented (to init or a subreaper): its parent id changes,
    however the parent ended, SIGKILL included."""
    return parent_pid is not None and os.getppid() != parent_pid


# How long a looping command keeps one database connection at most (as mmm.background does).
CONNECTION_MAX_AGE_SECONDS = 60.0


class KeptConnection:
    """A looping command's database connection, kept from one pass to the next.

    Django closes it after every pass where CONN_MAX_AGE is 0 (``close_old_connections``), and
    opening one costs about what an idle pass's queries do (SQLite registers its functions on
    every connect; PostgreSQL forks a server process for it), while most passes of the job runner,
    the webhook sender and the engine scraper find nothing to do, one to four times a second
    (``python -m bench.idle_cost``). So, as the web workers' background loop does
    (mmm.background), the connection is checked before a pass (one round trip on PostgreSQL,
    nothing on SQLite), dropped after a pass that failed on the database, and opened afresh at least once a minute.
    """

    def __init__(self, *, max_age: float = CONNECTION_MAX_AGE_SECONDS, clock=time.monotonic):
        self.max_age = max_age
        self._clock = clock
        self._since = clock()

    def before_pass(self) -> None:
        from mmm.database import drop_connection, drop_connection_if_dead

        if self._clock() - self._since >= self.max_age:
            drop_connection()
            self._since = self._clock()
        else:
            drop_connection_if_dead()

    def after_pass(self, *, failed: bool = False) -> None:
        from mmm.database import drop_connection

        if failed:  # the connection may be what failed
            drop_connection()
            self._since = self._clock()
