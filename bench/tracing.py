"""What tracing costs per request: the same gateway with tracing off and on.

``python -m bench.tracing`` (a step of ``make bench``) starts the fake upstream, which also
plays the OTLP receiver (POST /v1/traces answers 200), then gateways as ``make serve`` runs
them with one web worker, tracing off and on in turn (``--rounds`` times each, interleaved, so
a neighbour's load falls on both), registers a fast model and loads it at concurrency 1 and 16.
With tracing on, every request makes a server span, an attempt span and an HTTP client span,
batched and exported over OTLP/HTTP by the same process.

Besides latency and throughput, which a shared machine makes noisy, it reports the gateway's
CPU time per request (user + system of its processes, from /proc): the cost tracing adds
there does not depend on what else the machine runs. It prints a markdown table.
"""

import argparse
import sys
import tempfile
from pathlib import Path

from bench.compare import cpu_seconds
from bench.loadgen import Target, run_load
from bench.run import (
    COMPLETIONS_PATH,
    fake_upstream,
    gateway_env,
    migrate,
    register_models,
    rounded_or_none,
    running_gateway,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per scenario (8)")
    parser.add_argument("--rounds", type=int, default=2, help="gateways per mode, interleaved (2)")
    args = parser.parse_args(argv)
    rows = []
    with fake_upstream() as upstream_port:
        for _round in range(args.rounds):
            for mode in ("off", "on"):
                rows += run_mode(mode, upstream_port, args.duration)
    print("| tracing | concurrency | requests/s | p50 ms | p99 ms | gateway CPU ms per request | errors |")
    print("|---|---|---|---|---|---|---|")
    for mode, concurrency, result, cpu_ms in sorted(rows, key=lambda row: (row[1], row[0])):
        print(
            f"| {mode} | {concurrency} | {result.requests_per_second:.0f} | {rounded_or_none(result.percentile_ms(0.5))} "
            f"| {rounded_or_none(result.percentile_ms(0.99))} | {cpu_ms:.2f} | {result.error_count} |"
        )


def run_mode(mode: str, upstream_port: int, duration: float) -> list:
    rows = []
    with tempfile.TemporaryDirectory(prefix="mmm-bench-tracing-") as tmp:
        env = {name: value for name, value in gateway_env(Path(tmp)).items() if not name.startswith("OTEL_")}
        env["MMM_WEB_WORKERS"] = "1"
        if mode == "on":
            env.update(
                {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{upstream_port}", "OTEL_SERVICE_NAME": "mmm-bench"}
            )
        migrate(env)
        with running_gateway(env, Path(tmp) / "gateway.log") as gateway:
            register_models(gateway.port, upstream_port)
            target = Target(
                gateway.port, COMPLETIONS_PATH, {"input": "hello", "model_name": "bench-fast"}, expect_success=True
            )
            for concurrency in (1, 16):
                print(f"  tracing {mode}, c={concurrency} ...", file=sys.stderr, flush=True)
                run_load(target, concurrency=concurrency, warmup=1.0, duration=1.0)  # warm: connections, caches
                before = cpu_seconds(gateway.process.pid)
                result = run_load(target, concurrency=concurrency, warmup=0.0, duration=duration)
                spent = cpu_seconds(gateway.process.pid) - before
                served = len(result.latencies) + result.error_count
                rows.append((mode, concurrency, result, spent * 1000 / max(served, 1)))
    return rows


if __name__ == "__main__":
    main()
