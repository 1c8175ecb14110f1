"""What the routing table's reload costs a gevent worker's event loop: ``python -m bench.routing_reload``.

Each gunicorn worker reloads its routing table every MMM_ROUTING_REFRESH_SECONDS in its
background loop (mmm.background), a greenlet: while a reload runs, no request of that process
moves. In one gevent-patched process with the default SQLite database (a fresh file in a
temporary directory), for fleets of ``--sizes`` worker rows (each with an upstream key in its
encrypted headers), this times the reload's CPU and the longest gap it leaves in a greenlet
ticking every millisecond, two ways, interleaved round by round:

- rebuilt: every row built again by the ORM and the connection closed after each read (as
  before issue 16's sixth pass);
- incremental: what the background loop does now (registry.worker_rows builds only the rows
  whose stored values changed, the loop keeps its connection).

A fifth of the rounds change one row first (a heartbeat's ``queryset.update()``), so the
incremental way's figures include its rebuilds.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from bench import scratch_django  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.routing_reload", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,500", help="fleet sizes in worker rows (50,500)")
    parser.add_argument("--rounds", type=int, default=15, help="reloads per way and size (15)")
    args = parser.parse_args(argv)
    scratch_django.set_up(prefix="mmm-routing-reload-")
    import gevent
    from django.db import connection

    from inference.routing import RoutingTable, load_policies
    from mmm import background
    from registry.models import Worker

    def rebuilt(model_name=None):
        try:
            workers = Worker.objects.all()
            return list(workers if model_name is None else workers.filter(model_name=model_name))
        finally:
            connection.close()

    longest = [0.0]

    def tick() -> None:
        last = time.perf_counter()
        while True:
            gevent.sleep(0.001)
            now = time.perf_counter()
            longest[0] = max(longest[0], now - last)
            last = now

    ticker = gevent.spawn(tick)
    background._loop.active = True  # this greenlet is the background loop, as in a worker
    print("| worker rows | way | reload CPU, median ms | p90 ms | longest event-loop gap, median ms |")
    print("|---:|---|---:|---:|---:|")
    try:
        for size in [int(part) for part in args.sizes.split(",")]:
            Worker.objects.all().delete()
            Worker.objects.bulk_create(
                Worker(
                    model_name=f"model-{n % 20}",
                    req_url_template=f"http://127.0.0.1:9/{n}",
                    body={"prompt": "{USER_PROMPT}"},
                    headers={"Authorization": f"Bearer sk-bench-{n}"},
                )
                for n in range(size)
            )
            first = Worker.objects.order_by("pk").first().pk
            tables = {
                "rebuilt": RoutingTable(loader=rebuilt, policy_loader=load_policies),
                "incremental": RoutingTable(),
            }
            for table in tables.values():
                table.workers_for("model-0")  # the first load, as a request makes it
            cpu: dict[str, list[float]] = {name: [] for name in tables}
            gaps: dict[str, list[float]] = {name: [] for name in tables}
            for index in range(args.rounds):
                for name, table in tables.items():
                    if index % 5 == 4:
                        Worker.objects.filter(pk=first).update(heartbeat_expires_at=None, weight=1 + index % 3)
                    gevent.sleep(0.01)  # let the ticker run and start a fresh gap
                    longest[0] = 0.0
                    gevent.sleep(0.003)
                    started = time.process_time()
                    if name == "rebuilt":  # in a greenlet of its own: its own connection, closed
                        gevent.spawn(table.refresh).get(timeout=60)
                    else:
                        table.refresh()
                    cpu[name].append((time.process_time() - started) * 1000)
                    gevent.sleep(0.003)
                    gaps[name].append(longest[0] * 1000)
            for name in tables:
                ninety = sorted(cpu[name])[int(len(cpu[name]) * 0.9) - 1]
                print(
                    f"| {size} | {name} | {statistics.median(cpu[name]):.2f} | {ninety:.2f} "
                    f"| {statistics.median(gaps[name]):.2f} |"
                )
    finally:
        ticker.kill()
        background._loop.active = False
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
