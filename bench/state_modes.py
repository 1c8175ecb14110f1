"""What sharing the routing and limit state between the processes of one host costs, without
Redis: throughput and CPU per request at concurrency 32 against a fast upstream.

    .venv/bin/python -m bench.state_modes [--duration 8]

Three gateways as `make serve` starts them (SQLite, no Redis, keys off): one process; two
processes sharing the host's state server (the default, inference/host_state.py); two
processes each with its own state (MMM_SHARED_HOST_STATE=false: inexact, the upper bound).
CPU is the user + system time of the gunicorn master, its workers and the state server.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

from bench.compare import cpu_seconds
from bench.loadgen import run_load
from bench.run import (
    Scenario,
    fake_upstream,
    gateway_env,
    gateway_target,
    migrate,
    register_models,
    running_gateway,
)

MODES = {
    "1 process": {"MMM_WEB_WORKERS": "1"},
    "2 processes, shared host state (default)": {"MMM_WEB_WORKERS": "2"},
    "2 processes, state per process (inexact)": {"MMM_WEB_WORKERS": "2", "MMM_SHARED_HOST_STATE": "false"},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.state_modes", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0)
    args = parser.parse_args(argv)
    scenario = Scenario("fast upstream", "bench-fast", 32, args.duration)
    print(f"| gateway on {os.cpu_count()} CPUs, c=32, fast upstream | req/s | p50 ms | p99 ms | CPU ms per request |")
    print("|---|---:|---:|---:|---:|")
    with fake_upstream() as upstream_port:
        for name, extra in MODES.items():
            with tempfile.TemporaryDirectory() as tmp:
                env = {**gateway_env(Path(tmp)), **extra}
                env.pop("REDIS_URL", None)
                migrate(env)
                with running_gateway(env, Path(tmp) / "gateway.log") as gateway:
                    register_models(gateway.port, upstream_port)
                    target = gateway_target(gateway.port, scenario)
                    run_load(target, concurrency=32, warmup=0.0, duration=1.0)  # warm every process
                    before = cpu_seconds(gateway.process.pid)
                    result = run_load(target, concurrency=32, warmup=0.0, duration=args.duration)
                    cpu = cpu_seconds(gateway.process.pid) - before
            done = len(result.latencies)
            print(
                f"| {name} | {result.requests_per_second:.0f} | {result.percentile_ms(0.5):.1f} | "
                f"{result.percentile_ms(0.99):.1f} | {cpu * 1000 / max(done, 1):.2f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
