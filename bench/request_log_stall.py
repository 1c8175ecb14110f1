"""How long the request log's write holds a gevent worker's event loop: ``python -m bench.request_log_stall``.

In one gevent-patched process with the default SQLite database (a fresh file in a temporary
directory), a greenlet ticks every millisecond and notes the longest gap between its ticks
while the request log writes batches of rows (``--rows``, as many as one flush interval of
traffic leaves queued): once with the write in the flusher's greenlet, as before issue 16, and
once handed to gevent's thread pool, as console.request_log does now; with the objects of
start-up frozen out of the garbage collector's reach (``gc.freeze()``, as each gunicorn worker
does now) or not (``--no-freeze``). A gap is how long every request of the process waited, so it
is what a client sees in p99.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import gc  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from bench import scratch_django  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.request_log_stall", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000, help="rows per write (1000: one second at 1,000 req/s)")
    parser.add_argument("--rounds", type=int, default=7, help="writes per way (7)")
    parser.add_argument(
        "--freeze",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="gc.freeze() after start-up, as the gunicorn workers do (default: on)",
    )
    args = parser.parse_args(argv)
    scratch_django.set_up(prefix="mmm-log-stall-")
    import gevent
    from django.utils import timezone

    from console.models import RequestLog, epoch_minute
    from console.request_log import RequestLogWriter

    if args.freeze:  # as mmm/gunicorn.conf.py's post_worker_init does in each worker
        gc.collect()
        gc.freeze()

    def rows() -> list[RequestLog]:
        now = timezone.now()
        return [
            RequestLog(
                created_at=now,
                minute=epoch_minute(now),
                request_id=f"stall-{i}",
                model_name="bench",
                status=200,
                latency_ms=1.0,
                latency_class=0,
                attempts=1,
            )
            for i in range(args.rows)
        ]

    def longest_gap(write) -> float:
        gaps: list[float] = []
        done = False
        writer = RequestLogWriter(background=False, batch_size=args.rows)
        for row in rows():  # made before the ticks start: in a gateway each request made its own
            writer.add(row)

        def tick() -> None:
            last = time.perf_counter()
            while not done:
                gevent.sleep(0.001)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        ticker = gevent.spawn(tick)
        gevent.sleep(0.02)
        gevent.spawn(write, writer).join()
        done = True
        ticker.join()
        return max(gaps) * 1000

    ways = {
        "in the flusher's greenlet (before)": lambda writer: writer.flush(),
        "in gevent's thread pool (now)": lambda writer: gevent.get_hub().threadpool.apply(writer.flush),
    }
    results: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, write in ways.items():
            results[name].append(longest_gap(write))
    print(
        f"| request log write of {args.rows} rows to SQLite | longest event-loop stall, median of {args.rounds} (ms) |"
    )
    print("|---|---:|")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
