"""Outage benchmark: the gateway under steady load while its database or Redis is refused for
10 s and then blackholed for 10 s, each reached through a TCP proxy (tests/tcp_proxy.py).

    DATABASE_URL=postgres://... REDIS_URL=redis://.../N .venv/bin/python -m bench.outage

Two gunicorn processes, keys required, one fast upstream, four clients sending completions
one after another with a key they used before. Prints, per phase, the requests sent, the
fraction served (200) and the worst latency; for the database run also the request-log rows
written once it was back against the requests sent, and how soon an unseen key worked again.
"""

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmm.settings")
django.setup()

from tests.fake_upstream import FakeUpstream  # noqa: E402
from tests.gateway_process import GatewayProcess, gateway_database  # noqa: E402
from tests.outage_load import SteadyLoad, complete, logged_rows, service_address, start_serving, summary, through  # noqa: E402
from tests.tcp_proxy import FORWARD, TcpProxy  # noqa: E402


def run(service: str, window: float, phases: tuple[str, ...]) -> list[str]:
    upstream = FakeUpstream().start()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp, gateway_database(Path(tmp)) as env:
            env = {
                **env,
                "MMM_REQUIRE_AUTH": "true",
                "MMM_WEB_WORKERS": "2",
                "MMM_ROUTING_STATE_PREFIX": f"mmm:bench:{uuid.uuid4().hex[:8]}",
            }
            GatewayProcess(env=env).manage("migrate", "--noinput", "-v0").check_returncode()
            url = env["DATABASE_URL"] if service == "database" else os.environ["REDIS_URL"]
            proxy = TcpProxy(target_host=service_address(url)[0], target_port=service_address(url)[1]).start()
            variable = "DATABASE_URL" if service == "database" else "REDIS_URL"
            gateway, key, _ = start_serving(env, upstream, gateway_env={**env, variable: through(url, proxy)})
            unseen = GatewayProcess(env=env).create_api_key(scope="inference")
            try:
                with SteadyLoad(url=gateway.url, key=key) as load:
                    time.sleep(3)
                    for mode in phases:
                        load.phase = mode
                        proxy.set_mode(mode)
                        time.sleep(window)
                    load.phase = "back"
                    proxy.set_mode(FORWARD)
                    back_at = time.monotonic()
                    while complete(gateway, unseen).status_code != 200 and time.monotonic() - back_at < 60:
                        time.sleep(0.05)
                    recovered = time.monotonic() - back_at
                    time.sleep(2)
            finally:
                gateway.stop()
                proxy.stop()
            for mode in phases:
                stats = summary(load.in_phase(mode))
                rows.append(
                    f"| {service} {mode}d {window:g} s | {stats['requests']} | {stats['served_fraction']:.2%} | "
                    f"{stats['worst_seconds'] * 1000:.0f} ms | {', '.join(stats['codes']) or '-'} |"
                )
            if service == "database":
                logged = logged_rows(env["DATABASE_URL"])
                rows.append(
                    f"| request-log rows written / requests sent (database run) | "
                    f"{logged['all']} / {len(load.samples)} (+ recovery probes) | | | |"
                )
            if service == "database":
                rows.append(f"| database back: an unseen key served after | {recovered:.2f} s | | | |")
    finally:
        upstream.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.outage", description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=10.0, help="seconds of each refuse and blackhole phase (10)")
    parser.add_argument("--only", choices=("database", "redis"), help="run one service only")
    parser.add_argument(
        "--phases",
        default="refuse,blackhole",
        help="outage phases in order (default refuse,blackhole; 'blackhole' alone freezes a healthy service)",
    )
    args = parser.parse_args(argv)
    if not os.environ.get("DATABASE_URL", "").startswith("postgres") or not os.environ.get("REDIS_URL"):
        print("bench.outage needs DATABASE_URL=postgres://... and REDIS_URL", file=sys.stderr)
        return 2
    print("| outage | requests | served | worst latency | codes other than 200 |")
    print("|---|---|---|---|---|")
    for service in ("database", "redis"):
        if args.only in (None, service):
            for row in run(service, args.window, tuple(args.phases.split(","))):
                print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
