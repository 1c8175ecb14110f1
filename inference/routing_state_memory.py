"""The shared memory the gunicorn processes of one host keep their routing state in, without Redis.

The master makes it before it forks any worker (mmm/gunicorn.conf.py), so every worker inherits
the same pages, and hands its descriptor to the host-state server (inference.host_state), so
processes that only talk to that server (the engine scraper, a prober) change the same state.
inference.routing_state_shared reads and changes it; this module holds only what the master needs
as well: the layout, making the memory, giving each worker process a column and, when a process
has died, taking its in-flight counts back.

This module is imported by the master, so after a SIGHUP reload the workers run new code over
the master's memory (and this module as the master loaded it). The header's magic and layout
version say what the memory holds; a worker whose code expects another layout does not use it.

The layout is a header and then one array per field ("struct of arrays", each a
``memoryview.cast``): worker slots keyed by worker id (open addressing, never deleted but by a
reset), model slots for the retry budget keyed by model name (the name is kept, so two names
that hash alike are told apart). In-flight and running-retry counts are kept per (process
column, slot) as well as in a total, so the master can subtract a dead process's column.

The lock is a POSIX record lock (``fcntl.lockf``) on the memory's own file: the kernel drops it
when its holder dies, so a process SIGKILLed inside a change cannot wedge the others.
"""

import fcntl
import mmap
import os
import struct
import tempfile
import threading

MAGIC = b"mmm-rs\x00\x01"
LAYOUT_VERSION = 1
WORKER_SLOTS = 2048
MODEL_SLOTS = 512
REASON_BYTES = 1200  # an ejection reason is cut at 300 characters; UTF-8 needs up to 4 bytes each
MODEL_NAME_BYTES = 200
_HEADER = struct.Struct("8sqqqqq")  # magic, layout version, worker slots, model slots, columns, reset epoch
_HEADER_BYTES = 64

# Per worker slot: floats, then integers (the success-rate slots are two of each).
WORKER_FLOATS = ("ewma", "ewma_at", "ejected_until", "cooldown_until", "trial_until")
WORKER_INTS = (
    "key",  # worker id + 1; 0 is a free slot
    "has_ewma",
    "fails",
    "ejections",
    "trial_digest",
    "has_trial",
    "minute0",
    "ok0",
    "total0",
    "minute1",
    "ok1",
    "total1",
    "reason_len",
    "in_flight",
)
MODEL_INTS = ("name_len", "window", "requests", "retries", "running")


class Layout:
    """Where each array lives in the memory, for given capacities."""

    def __init__(self, *, workers: int, models: int, columns: int):
        self.workers, self.models, self.columns = workers, models, columns
        offset = _HEADER_BYTES
        self.regions: dict[str, tuple[int, int, str]] = {}  # name -> (offset, bytes, cast format)

        def region(name: str, size: int, fmt: str) -> None:
            nonlocal offset
            self.regions[name] = (offset, size, fmt)
            offset += (size + 7) // 8 * 8

        for name in WORKER_FLOATS:
            region(f"w_{name}", workers * 8, "d")
        for name in WORKER_INTS:
            region(f"w_{name}", workers * 8, "q")
        region("w_reason", workers * REASON_BYTES, "B")
        region("w_columns", workers * columns * 8, "q")  # in flight, by [slot * columns + column]
        for name in MODEL_INTS:
            region(f"m_{name}", models * 8, "q")
        region("m_name", models * MODEL_NAME_BYTES, "B")
        region("m_columns", models * columns * 8, "q")  # running retries, the same way
        self.size = (offset + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE


class Memory:
    """The mapped memory, its arrays as attributes (``w_fails``, ``m_requests``...), and its lock."""

    def __init__(self, *, fd: int, buffer: mmap.mmap, layout: Layout):
        self.fd = fd
        self.buffer = buffer
        self.layout = layout
        view = memoryview(buffer)
        self.header = view[:_HEADER_BYTES]
        self.header_q = self.header.cast("q")  # [1] the layout version, [5] the reset epoch
        for name, (offset, size, fmt) in layout.regions.items():
            setattr(self, name, view[offset : offset + size].cast(fmt))
        self.body = view[_HEADER_BYTES:]
        self._thread_lock = threading.Lock()  # a record lock is the process's: threads need their own

    @property
    def epoch(self) -> int:
        return self.header_q[5]

    def __enter__(self):
        # No I/O and no greenlet switch happens while it is held: the callers change a few numbers.
        self._thread_lock.acquire()
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX, 1, 0)
        except BaseException:
            self._thread_lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, 0)
        self._thread_lock.release()

    def clear(self) -> None:
        """Forget everything (under the lock): what ``reset`` asks for."""
        self.body[:] = bytes(len(self.body))
        self.header_q[5] += 1  # each process forgets the tokens and slots it remembers

    def release_column(self, column: int) -> None:
        """A process that held ``column`` is gone: its requests and retries stop counting."""
        columns = self.layout.columns
        with self:
            for key_array, counts, totals, slots in (
                (self.w_key, self.w_columns, self.w_in_flight, self.layout.workers),
                (self.m_name_len, self.m_columns, self.m_running, self.layout.models),
            ):
                for slot in range(slots):
                    if key_array[slot]:
                        counts[slot * columns + column] = 0
                        # From the columns, not by subtracting: a process killed half way through a
                        # change may have moved its column and not yet the total.
                        totals[slot] = sum(counts[slot * columns : (slot + 1) * columns])


def create(*, columns: int, workers: int = WORKER_SLOTS, models: int = MODEL_SLOTS) -> Memory:
    """New zeroed memory with its header: in the master, before any worker is forked."""
    layout = Layout(workers=workers, models=models, columns=columns)
    # An anonymous file (no name anywhere, gone with its last process) rather than mmap(-1): the
    # host-state server is started with exec, and inherits a descriptor but no mapping.
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("mmm-routing-state")
    else:  # not Linux: an unlinked temporary file is as anonymous
        with tempfile.TemporaryFile() as file:
            fd = os.dup(file.fileno())
    os.ftruncate(fd, layout.size)
    buffer = mmap.mmap(fd, layout.size, flags=mmap.MAP_SHARED)
    _HEADER.pack_into(buffer, 0, MAGIC, LAYOUT_VERSION, workers, models, columns, 0)
    return Memory(fd=fd, buffer=buffer, layout=layout)


def attach(fd: int) -> Memory | None:
    """The memory behind a descriptor another process made, if its layout is this code's."""
    size = os.fstat(fd).st_size
    if size < _HEADER_BYTES:
        return None
    buffer = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
    return checked(fd=fd, buffer=buffer)


def checked(*, fd: int, buffer: mmap.mmap) -> Memory | None:
    """A Memory over ``buffer`` if its header is the layout this code knows, else None."""
    magic, version, workers, models, columns, _ = _HEADER.unpack_from(buffer, 0)
    if magic != MAGIC or version != LAYOUT_VERSION:
        return None
    layout = Layout(workers=workers, models=models, columns=columns)
    if layout.size > len(buffer):
        return None
    return Memory(fd=fd, buffer=buffer, layout=layout)


# --- In the gunicorn master and its workers ---------------------------------------------------

SERVER_COLUMN = 0  # the host-state server's own (it takes slots for the clients without memory)

_memory: Memory | None = None  # the master's, inherited by each worker
_column: int | None = None  # this worker process's column


def share(*, columns: int) -> Memory:
    """In the master, before any worker is forked. Once: a reload keeps the memory it has."""
    global _memory
    if _memory is None:
        _memory = create(columns=columns)
    return _memory


def shared() -> tuple[Memory, int] | None:
    """In a worker process: the master's memory and this process's column, if it has both."""
    if _memory is None or _column is None:
        return None
    return _memory, _column


def assign(worker, *, live_workers) -> None:
    """In the master, before forking ``worker``: the first column no live worker holds."""
    if _memory is None:
        return
    taken = {SERVER_COLUMN} | {getattr(other, "routing_column", None) for other in live_workers}
    free = [column for column in range(_memory.layout.columns) if column not in taken]
    worker.routing_column = free[0] if free else None  # none left: that process asks the server


def start(worker) -> None:
    """In the worker process, after the fork: count in the column the master gave it."""
    global _column
    _column = getattr(worker, "routing_column", None)


def release(worker) -> None:
    """In the master, once ``worker`` has exited (however it died)."""
    column = getattr(worker, "routing_column", None)
    if _memory is not None and column is not None:
        _memory.release_column(column)
