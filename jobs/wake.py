"""Waking the job runner when a job is queued, so that while idle it can wait long between passes.

An idle runner's pass is a handful of queries; five a second cost a tenth of a core on every
host for nothing. So the runner backs off to MMM_JOB_IDLE_MAX_SECONDS between passes while it
finds nothing to do, and listens on a unix datagram socket (MMM_JOB_WAKE_SOCKET, which the
gunicorn config sets for the runner it starts) for the web workers of its host to say a job was
queued: the job is submitted at once, not a second later. A job queued on a host without a
runner, or a lost datagram, waits at most the backoff.
"""

import logging
import os
import socket
import threading

from django.conf import settings

logger = logging.getLogger("mmm.jobs")


def notify_runner() -> None:
    """Tell this host's runner a job was queued; never blocks, never fails the caller."""
    path = settings.MMM_JOB_WAKE_SOCKET
    if not path:
        return
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(b"queued", path)
    except OSError:
        pass  # no runner listening (or its queue is full: it is awake anyway)


class RunnerWake:
    """The runner's side: ``event`` is set when a web worker says a job was queued (and by
    whoever else wants the runner's loop to look now, such as its stop signal)."""

    def __init__(self, *, path: str, event: threading.Event):
        self.event = event
        self._sock: socket.socket | None = None
        if not path:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            if os.path.exists(path):
                os.unlink(path)  # left by a runner that was killed
            sock.bind(path)
            os.chmod(path, 0o600)
        except OSError as exc:
            sock.close()
            logger.warning("job runner: not listening for new jobs on %s (%s); polling only", path, exc)
            return
        sock.settimeout(1.0)  # so close() is noticed
        self._sock = sock
        threading.Thread(target=self._listen, name="job-wake", daemon=True).start()

    def _listen(self) -> None:
        while self._sock is not None:
            try:
                self._sock.recv(64)
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            self.event.set()

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
