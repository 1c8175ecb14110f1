"""prometheus_client's multiprocess values as the gateway's processes keep them.

Under multiprocess mode every change of a value (a counter's inc, each of a histogram's two,
the in-flight gauge's inc and dec: about ten per completion) takes the one lock
``MultiProcessValue`` makes, and asks for the process id to notice a fork. Two things make that
cheaper without changing what is counted:

- the process id as of the last fork (mmm.process), not a system call each time;
- the lock an OS lock, not gevent's. Under gevent's monkey-patching ``threading.Lock`` is
  gevent's, whose acquire and release are Python calls (with the id look-ups behind them, 1% of
  a proxied completion's CPU at c=32, docs/benchmark.md). Nothing inside the lock waits: it
  writes a few bytes into the process's mmap file, or opens that file after a fork, and neither
  yields to another greenlet, so no greenlet can switch while holding it and an OS lock excludes
  what gevent's did (other greenlets never meet it held; real threads, such as the request-log
  writer's, wait for it as for any lock).
"""

from gevent import monkey
from prometheus_client import values

from mmm.process import current_pid

# The OS's lock, whether or not gevent has patched the thread module.
_os_lock = monkey.get_original("_thread", "allocate_lock")


def multiprocess_value_class() -> type:
    """``MultiProcessValue(current_pid)``, its shared lock made by ``_os_lock``."""
    threadings_lock = values.Lock  # (the name MultiProcessValue calls to make its lock)
    values.Lock = _os_lock
    try:
        return values.MultiProcessValue(process_identifier=current_pid)
    finally:
        values.Lock = threadings_lock
