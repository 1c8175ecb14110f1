"""Connection-flood benchmark: N idle client sockets held open against the gateway, then real
completions, as `make serve` runs it (gunicorn, gevent, the default settings).

    .venv/bin/python -m bench.idle_sockets [--idle 2000] [--requests 50]

Prints the latency of the real requests (p50, p99, worst) sent at once without idle sockets (the
baseline: 50 client threads and the in-process fake upstream share this process), then at once
and one by one while the idle sockets are open.
"""

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmm.settings")
django.setup()

import requests  # noqa: E402

from tests.conftest import SEED_ANSWER, seed_registration  # noqa: E402
from tests.fake_upstream import FakeUpstream  # noqa: E402
from tests.gateway_process import GatewayProcess  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def timed_request(url: str) -> tuple[float, int]:
    started = time.monotonic()
    status = requests.post(url, json={"model_name": "proxyllm", "input": "hi"}, timeout=60).status_code
    return time.monotonic() - started, status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_sockets", description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=2000, help="idle sockets to hold open (2000)")
    parser.add_argument("--requests", type=int, default=50, help="real requests sent while they are open (50)")
    args = parser.parse_args(argv)
    upstream = FakeUpstream().start()
    with tempfile.TemporaryDirectory() as tmp:
        env = {"MMM_VAR_DIR": tmp, "DATABASE_URL": f"sqlite:///{Path(tmp) / 'db.sqlite3'}", "REDIS_URL": ""}
        GatewayProcess(env=env).manage("migrate", "--noinput", "-v0").check_returncode()
        gateway = GatewayProcess(env=env).start()
        idle: list[socket.socket] = []
        try:
            gateway.post(
                "/api/server/register", seed_registration(upstream.on("/gen", json=SEED_ANSWER))
            ).raise_for_status()
            url = gateway.url + "/api/v1/chat/completions"
            with ThreadPoolExecutor(args.requests) as pool:
                baseline = list(pool.map(lambda _: timed_request(url), range(args.requests)))
            opened = time.monotonic()
            for _ in range(args.idle):
                idle.append(socket.create_connection(("127.0.0.1", gateway.port), timeout=10))
            opened = time.monotonic() - opened
            with ThreadPoolExecutor(args.requests) as pool:
                together = list(pool.map(lambda _: timed_request(url), range(args.requests)))
            one_by_one = [timed_request(url) for _ in range(args.requests)]
        finally:
            for sock in idle:
                sock.close()
            gateway.stop()
            upstream.stop()
    print(
        f"{args.idle} idle sockets opened in {opened:.2f} s; gateway: MMM_WEB_WORKERS default, keep-alive "
        f"{os.environ.get('MMM_KEEPALIVE_SECONDS', '2')} s"
    )
    print("| real requests | answered 200 | p50 ms | p99 ms | worst ms |")
    print("|---|---:|---:|---:|---:|")
    for name, results in (
        (f"{args.requests} at once, no idle sockets (baseline)", baseline),
        (f"{args.requests} at once, {args.idle} idle sockets open", together),
        (f"{args.requests} one by one, {args.idle} idle sockets open", one_by_one),
    ):
        seconds = [s for s, _ in results]
        print(
            f"| {name} | {sum(1 for _, status in results if status == 200)}/{len(results)} | "
            f"{statistics.median(seconds) * 1000:.0f} | {percentile(seconds, 0.99) * 1000:.0f} | {max(seconds) * 1000:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
