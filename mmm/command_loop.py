"""What the looping management commands (probe_workers, run_jobs, deliver_webhooks,
scrape_engines) share: a stop on SIGTERM or SIGINT, and noticing that the gunicorn master that
started one beside itself is gone."""

import os
import signal
import threading


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT, so a loop ends after its pass instead of mid-write."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def parent_gone(parent_pid: int | None) -> bool:
    """Whether the process ``parent_pid`` that started this one has ended (never, for None).

    A child whose parent died is re-parented (to init or a subreaper): its parent id changes,
    however the parent ended, SIGKILL included."""
    return parent_pid is not None and os.getppid() != parent_pid
