"""console.metric_values: multiprocess metric values behind an OS lock count exactly, from
greenlets and real threads of a gevent-patched process, as a scrape adds them up."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Run as a gunicorn worker runs: gevent patched first, then the value class made.
COUNTING = textwrap.dedent(
    """
    from gevent import monkey

    monkey.patch_all()

    import json, sys

    import gevent
    from prometheus_client import CollectorRegistry, Counter, values
    from prometheus_client.multiprocess import MultiProcessCollector

    from console.metric_values import multiprocess_value_class

    values.ValueClass = multiprocess_value_class()
    counter = Counter("counted", "test", ["by"])
    greenlets_child, threads_child = counter.labels("greenlet"), counter.labels("thread")

    def by_greenlet():
        for index in range(2000):
            greenlets_child.inc()
            if index % 100 == 0:
                gevent.sleep(0)  # other greenlets run between changes, as requests do

    def by_thread():
        for _ in range(20000):
            threads_child.inc()

    # Real threads, as the request-log writer's: gevent's thread pool runs them in OS threads.
    pool = gevent.get_hub().threadpool
    threads = [pool.spawn(by_thread) for _ in range(4)]
    greenlets = [gevent.spawn(by_greenlet) for _ in range(8)]
    gevent.joinall(greenlets, timeout=60, raise_error=True)
    for thread in threads:
        thread.get(timeout=60)

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=sys.argv[1])
    seen = {
        sample.labels["by"]: sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == "counted_total"
    }
    print(json.dumps({"seen": seen, "done": [greenlet.dead for greenlet in greenlets]}))
    """
)


def test_changes_from_greenlets_and_threads_are_all_counted(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", COUNTING, str(tmp_path)],
        cwd=ROOT,
        env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["done"] == [True] * 8, "a counting greenlet did not finish within 60 s"
    assert answer["seen"] == {"greenlet": 8 * 2000, "thread": 4 * 20000}


# The lock MultiProcessValue made, read from the value class's inc() (a cell of its closure).
LOCK_OF_THE_CLASS = textwrap.dedent(
    """
    from gevent import monkey

    monkey.patch_all()

    import threading

    from prometheus_client import values

    from console.metric_values import multiprocess_value_class

    def lock_of(value_class):
        cells = dict(zip(value_class.inc.__code__.co_freevars, value_class.inc.__closure__))
        return cells["lock"].cell_contents

    os_lock_type = type(monkey.get_original("_thread", "allocate_lock")())
    ours, prometheus_default = lock_of(multiprocess_value_class()), lock_of(values.MultiProcessValue())
    print(type(ours) is os_lock_type, type(prometheus_default) is os_lock_type, values.Lock is threading.Lock)
    """
)


def test_the_value_class_locks_with_the_oss_lock_where_gevent_patched_threading():
    done = subprocess.run(
        [sys.executable, "-c", LOCK_OF_THE_CLASS],
        cwd=ROOT,
        env={"PROMETHEUS_MULTIPROC_DIR": "/nonexistent", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # Ours is the OS's lock; prometheus_client's own is gevent's there; its module is left as found.
    assert done.stdout.split() == ["True", "False", "True"]
