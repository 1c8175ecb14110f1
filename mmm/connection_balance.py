"""Spreading a host's client connections evenly over its gunicorn workers.

Every worker accepts from the one listening socket the master opened, and whichever is first to
call accept() gets the connection. A burst of connections (a load balancer or a client pool
opening its keep-alive connections at once) then lands unevenly: 25 of 32 on one worker and 7
on the other was common here, so one core did three quarters of the work while the other idled,
and throughput at c=32 was that of one worker (bench/budgets.py's rounds swung 400 to 700
req/s on it). Keep-alive connections stay where they landed for their whole life.

So each worker counts the connections it holds in a slot of a small array of shared memory
that the master made before forking, and a worker that holds more than the least busy live
worker (by more than ``SLACK``) lets ``PAUSE_SECONDS`` pass before it accepts, giving the others
the first chance at the connection. It never refuses: if nobody else takes it in that time
(the others are stuck, or all as busy), it accepts as before. nginx's accept_mutex and its
"7/8 of worker_connections" rule balance its workers the same way.
"""

import multiprocessing

SLACK = 1  # connections a worker may hold over the least busy one and still accept at once
# The pause is a connection's wait whenever the least busy worker is in the middle of a request
# and does not accept at once: 10 ms put a stream's first byte at c=16 (a new connection per
# stream) 7.4-9.2 ms after it was sent, against 4.1-5.5 ms with no balancing and 5.7-5.9 ms with
# 1 ms, which still shares a burst of 32 connections 17/15 or 16/16 (docs/benchmark.md).
PAUSE_SECONDS = 0.001
_FREE = -1  # a slot no live worker holds

_counts = None  # multiprocessing.RawArray of connection counts, one slot per worker
_slot: int | None = None  # this worker's slot (in a worker process)


def share(*, slots: int) -> None:
    """In the master, before any worker is forked: the array every worker inherits."""
    global _counts
    _counts = multiprocessing.RawArray("l", [_FREE] * slots)


def assign(worker, *, live_workers) -> None:
    """In the master, before forking ``worker``: give it the first slot no live worker holds."""
    if _counts is None:
        return
    taken = {getattr(other, "connection_slot", None) for other in live_workers}
    free = [index for index in range(len(_counts)) if index not in taken]
    worker.connection_slot = free[0] if free else None
    if worker.connection_slot is not None:
        _counts[worker.connection_slot] = 0


def release(worker) -> None:
    """In the master, once ``worker`` has exited: its slot counts for nobody."""
    slot = getattr(worker, "connection_slot", None)
    if _counts is not None and slot is not None:
        _counts[slot] = _FREE


def start_counting(worker) -> None:
    """In the worker process: count into the slot the master gave it."""
    global _slot
    _slot = getattr(worker, "connection_slot", None) if _counts is not None else None


def opened() -> None:
    if _slot is not None:
        _counts[_slot] += 1


def closed() -> None:
    if _slot is not None:
        _counts[_slot] -= 1


def ahead_of_the_others() -> bool:
    """Whether this worker holds more connections than the least busy live worker, past SLACK."""
    if _slot is None:
        return False
    mine = _counts[_slot]
    least = min((count for count in _counts if count != _FREE), default=mine)
    return mine > least + SLACK
