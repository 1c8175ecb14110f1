"""Routing benchmark: how each strategy shares traffic between fast workers and a slow one.

``python -m bench.routing`` (the last step of ``make bench``) starts a counting fake upstream
and the gateway as ``make serve`` runs it, with its routing state in Redis db 9 when Redis
answers on 127.0.0.1:6379 (in each process otherwise). Two scenarios, each at concurrency 16:

1. Three workers of one model, two answering in 50 ms (``/fast1``, ``/fast2``) and one in
   500 ms (``/slow``), once per strategy. Target, for least_loaded (the default): p99 at most
   twice the fast workers' latency and under 2% of the requests on the slow worker.
2. Three workers of one model, one of them (``/failing``) answering HTTP 500 at once, default
   strategy. Target: no error reaches a client; the failing worker gets as few requests as
   it takes to eject it.
3. Two identical workers (``/fast1``, ``/fast2``) of a new model, 28 sequential requests with
   the default strategy, as a new user tries it; several times, each on a model of its own.
   Target: no split worse than 10/18 (equal latency averages tie, and ties rotate).

Each worker has its own path on the upstream, which counts the requests per path and tells
them on ``GET /hits``: the shares are what the upstream received, not what the gateway says.
Each strategy gets its own model with three new workers, so it starts from a fresh routing
state (no latency, counts or ejections carried over from the strategy before).
"""

import argparse
import asyncio
import os
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from bench.loadgen import LoadResult, Target, run_load
from bench.run import (
    COMPLETIONS_PATH,
    SetupError,
    call_json,
    gateway_env,
    log_problems,
    migrate,
    running_gateway,
    upstream_process,
)
from bench.upstream import response_bytes

FAST_SECONDS = 0.05
SLOW_SECONDS = 0.5
CONCURRENCY = 16
HITS_PATH = "/hits"
REDIS_URL = "redis://127.0.0.1:6379/9"
STRATEGIES = ("least_loaded", "least_busy", "round_robin", "random")
DEFAULT_STRATEGY = "least_loaded"
PAIR_PATHS = ("/fast1", "/fast2")
PAIR_REQUESTS = 28
PAIR_RUNS = 5
# How often the traffic the gateway sees (in flight, latency EWMA) is sampled during a run.
SAMPLE_SECONDS = 0.5
# Policies set through one gateway process reach the others when they reload their routing table.
ROUTING_REFRESH_WAIT = 1.5


@dataclass(frozen=True)
class Route:
    delay: float
    status: int = 200


ROUTES = {
    "/fast1": Route(FAST_SECONDS),
    "/fast2": Route(FAST_SECONDS),
    "/slow": Route(SLOW_SECONDS),
    "/failing": Route(0.0, status=500),  # as a crashed model server behind a proxy: at once
}
MIXED_PATHS = ("/fast1", "/fast2", "/slow")
FAILING_PATHS = ("/fast1", "/fast2", "/failing")


# --- The counting upstream (runs in its own process) ----------------------------------------


def upstream_answer(method: str, path: str, hits: Counter[str]) -> tuple[int, object, float]:
    """(status, JSON document, seconds to wait before answering); counts each request to a route."""
    if method == "GET" and path == HITS_PATH:
        return 200, dict(hits), 0.0
    route = ROUTES.get(path)
    if route is None:
        return 404, {"error": f"no route {path}"}, 0.0
    hits[path] += 1
    if route.status != 200:
        return route.status, {"error": f"{path} fails on purpose"}, route.delay
    # The answer is fixed: the gateway's extract path only has to find it.
    return 200, {"data": {"items": [{"attributes": {"answer": path}}]}}, route.delay


async def serve_upstream_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hits: Counter[str]
) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, _version = request_line.split(" ", 2)
            headers = dict(line.lower().split(": ", 1) for line in header_lines if ": " in line)
            await reader.readexactly(int(headers.get("content-length", "0")))
            status, document, delay = upstream_answer(method, target.partition("?")[0], hits)
            await asyncio.sleep(delay)
            writer.write(response_bytes(status, document))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the gateway closed a pooled connection
    finally:
        writer.close()


async def serve_upstream(sock: socket.socket) -> None:
    hits: Counter[str] = Counter()
    server = await asyncio.start_server(lambda r, w: serve_upstream_connection(r, w, hits), sock=sock)
    async with server:
        await server.serve_forever()


def counting_upstream():
    """Run the counting upstream in its own process (as bench.run runs its upstream); yields its port."""
    return upstream_process("bench.routing", fd_flag="--upstream-fd")


def upstream_hits(port: int) -> Counter[str]:
    status, hits = call_json(port, "GET", HITS_PATH)
    if status != 200:
        raise SetupError(f"the counting upstream answered HTTP {status} on {HITS_PATH}")
    return Counter(hits)


# --- Routing state ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SharedState:
    redis_url: str | None  # None: each gunicorn process routes on its own counts
    prefix: str

    def describe(self) -> str:
        if self.redis_url:
            return f"routing state shared in Redis {self.redis_url} (key prefix {self.prefix})"
        return (
            "routing state per gunicorn process: no Redis answered on 127.0.0.1:6379, so each "
            "process sees only its own in-flight counts and latencies"
        )


def redis_client(url: str):
    import redis

    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


def shared_state() -> SharedState:
    prefix = f"mmm-bench-routing:{uuid.uuid4().hex[:12]}"  # this run's keys only, deleted at the end
    try:
        redis_client(REDIS_URL).ping()
    except Exception:  # not installed, not running, not reachable: all mean "no Redis"
        return SharedState(redis_url=None, prefix=prefix)
    return SharedState(redis_url=REDIS_URL, prefix=prefix)


def state_env(env: dict[str, str], state: SharedState) -> dict[str, str]:
    env = {key: value for key, value in env.items() if key != "REDIS_URL"}
    if state.redis_url:
        env.update(
            REDIS_URL=state.redis_url,
            MMM_ROUTING_STATE_PREFIX=state.prefix,
            MMM_CACHE_PREFIX=f"{state.prefix}:cache",
        )
    return env


def delete_state(state: SharedState) -> None:
    if state.redis_url:
        client = redis_client(state.redis_url)
        keys = list(client.scan_iter(match=f"{state.prefix}:*", count=1000))
        if keys:
            client.delete(*keys)


# --- Measuring -------------------------------------------------------------------------------


@dataclass
class TrafficSamples:
    """What GET /api/server/workers said about each worker (by path) during a run."""

    in_flight: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    last: dict[str, dict] = field(default_factory=dict)

    def add(self, workers: list[dict]) -> None:
        for worker in workers:
            path = "/" + worker["req_url_template"].rsplit("/", 1)[-1]
            traffic = worker.get("traffic") or {}
            self.in_flight[path].append(traffic.get("in_flight", 0))
            self.last[path] = traffic

    def mean_in_flight(self, path: str) -> float:
        samples = self.in_flight.get(path) or [0]
        return sum(samples) / len(samples)


@dataclass(frozen=True)
class Run:
    label: str
    model_name: str
    paths: tuple[str, ...]
    result: LoadResult
    hits: Counter[str]  # requests each path received while measured
    hits_from_start: Counter[str]  # the same, warm-up included
    samples: TrafficSamples

    @property
    def upstream_requests(self) -> int:
        return sum(self.hits[path] for path in self.paths)

    def share(self, path: str) -> float:
        return self.hits[path] / self.upstream_requests if self.upstream_requests else float("nan")


def register(
    gateway_port: int, upstream_port: int, model_name: str, paths: tuple[str, ...], strategy: str | None
) -> None:
    documents = [
        (
            "/api/server/register",
            {
                "model_name": model_name,
                "req_url_template": f"http://127.0.0.1:{upstream_port}{path}",
                "body": {"input": "{USER_PROMPT}"},
                "response_extract": "data.items[].attributes.answer",
                "timeout": 30,
            },
        )
        for path in paths
    ]
    if strategy is not None:
        documents.append(("/api/server/policy", {"model_name": model_name, "strategy": strategy}))
    for api_path, document in documents:
        status, answer = call_json(gateway_port, "POST", api_path, document)
        if status != 200 or answer.get("success") is not True:
            raise SetupError(f"POST {api_path} {document} failed: HTTP {status} {answer}")


def sample_while(stop: threading.Event, gateway_port: int, model_name: str, samples: TrafficSamples) -> None:
    while not stop.wait(SAMPLE_SECONDS):
        with suppress(OSError, ValueError):
            status, answer = call_json(gateway_port, "GET", f"/api/server/workers?model_name={model_name}")
            if status == 200:
                samples.add(answer["data"])


def measure(
    *,
    label: str,
    model_name: str,
    paths: tuple[str, ...],
    gateway_port: int,
    upstream_port: int,
    warmup: float,
    duration: float,
) -> Run:
    print(f"  {label}: {model_name}, c={CONCURRENCY}, {warmup:g} s + {duration:g} s ...", file=sys.stderr, flush=True)
    target = Target(
        port=gateway_port,
        path=COMPLETIONS_PATH,
        json_body={"input": "hello", "model_name": model_name},
        expect_success=True,
    )
    samples = TrafficSamples()
    at_start = upstream_hits(upstream_port)
    at_window: list[Counter[str]] = []
    stop = threading.Event()

    def watch() -> None:
        # The load generator's measured window opens after the warm-up; read the counts then.
        if not stop.wait(warmup):
            at_window.append(upstream_hits(upstream_port))
        sample_while(stop, gateway_port, model_name, samples)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = run_load(target, concurrency=CONCURRENCY, warmup=warmup, duration=duration)
    finally:
        stop.set()
        watcher.join()
    at_end = upstream_hits(upstream_port)
    window_start = at_window[0] if at_window else at_start
    return Run(label, model_name, paths, result, at_end - window_start, at_end - at_start, samples)


def sequential_split(*, gateway_port: int, upstream_port: int, model_name: str) -> tuple[int, ...]:
    """How PAIR_REQUESTS requests sent one after another split between the two workers."""
    before = upstream_hits(upstream_port)
    for _ in range(PAIR_REQUESTS):
        status, answer = call_json(gateway_port, "POST", COMPLETIONS_PATH, {"input": "hello", "model_name": model_name})
        if status != 200:
            raise SetupError(f"sequential request to {model_name} failed: HTTP {status} {answer}")
    after = upstream_hits(upstream_port)
    return tuple(after[path] - before[path] for path in PAIR_PATHS)


# --- Reporting -------------------------------------------------------------------------------


def pair_lines(splits: list[tuple[int, ...]]) -> list[str]:
    worst = min(min(split) for split in splits)
    cells = ", ".join("/".join(map(str, split)) for split in splits)
    return [
        f"two identical workers, {PAIR_REQUESTS} sequential requests, {DEFAULT_STRATEGY}, {len(splits)} runs: "
        f"{cells}; worst {worst}/{PAIR_REQUESTS - worst} (target no worse than 10/18)"
    ]


def share_cell(run: Run, path: str) -> str:
    return f"{run.share(path) * 100:.1f}% ({run.hits[path]})"


def strategy_table(runs: list[Run]) -> str:
    lines = [
        "| strategy | req/s | p50 ms | p99 ms | " + " | ".join(MIXED_PATHS) + " | errors |",
        "|---|---:|---:|---:|" + "---:|" * len(MIXED_PATHS) + "---:|",
    ]
    for run in runs:
        r = run.result
        lines.append(
            f"| {run.label} | {r.requests_per_second:.1f} | {r.percentile_ms(0.50):.1f} | {r.percentile_ms(0.99):.1f} | "
            + " | ".join(share_cell(run, path) for path in MIXED_PATHS)
            + f" | {r.error_count} |"
        )
    return "\n".join(lines)


def failing_table(run: Run) -> str:
    r = run.result
    total = sum(run.hits_from_start[path] for path in run.paths)
    cells = " | ".join(f"{run.hits_from_start[path]}" for path in run.paths)
    return "\n".join(
        [
            "| scenario | req/s | p50 ms | p99 ms | "
            + " | ".join(f"{path} requests" for path in FAILING_PATHS)
            + " | upstream requests | client errors |",
            "|---|---:|---:|---:|" + "---:|" * len(FAILING_PATHS) + "---:|---:|",
            f"| {run.label} | {r.requests_per_second:.1f} | {r.percentile_ms(0.50):.1f} | {r.percentile_ms(0.99):.1f} "
            f"| {cells} | {total} | {r.error_count} |",
        ]
    )


def traffic_lines(run: Run) -> list[str]:
    """What the gateway saw: the diagnosis when a strategy shares traffic other than expected."""
    lines = []
    for path in run.paths:
        last = run.samples.last.get(path, {})
        ewma = last.get("latency_ewma_ms")
        extra = ""
        if last.get("ejections"):
            extra = f", ejections {last['ejections']}, ejected until {last.get('ejected_until')}"
        lines.append(
            f"    {path}: mean in flight {run.samples.mean_in_flight(path):.1f}, "
            f"latency EWMA {'-' if ewma is None else f'{ewma:g} ms'}{extra}"
        )
    return [
        f"  {run.label}, model {run.model_name}, sampled every {SAMPLE_SECONDS:g} s from GET /api/server/workers:",
        *lines,
    ]


def target_lines(strategy_runs: list[Run], failing: Run | None) -> list[str]:
    lines = []
    default = next((run for run in strategy_runs if run.label.startswith(DEFAULT_STRATEGY)), None)
    if default is not None:
        lines.append(
            f"{DEFAULT_STRATEGY}: p99 {default.result.percentile_ms(0.99):.1f} ms "
            f"(target <= {2 * FAST_SECONDS * 1000:.0f} ms, twice the fast workers' {FAST_SECONDS * 1000:.0f} ms), "
            f"slow worker's share {default.share('/slow') * 100:.1f}% (target < 2%)"
        )
    if failing is not None:
        received = failing.hits_from_start["/failing"]
        total = sum(failing.hits_from_start[path] for path in failing.paths)
        lines.append(
            f"one worker failing, {DEFAULT_STRATEGY}: {failing.result.error_count} client errors (target 0); "
            f"the failing worker received {received} of {total} upstream requests"
        )
    return lines


def error_lines(runs: list[Run], log_path: Path) -> list[str]:
    lines = [f"errors in {run.label}: {dict(run.result.errors)}" for run in runs if run.result.error_count]
    if lines:
        lines.append("gateway log (warnings and errors):\n" + log_problems(log_path))
    return lines


# --- Running ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.routing", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds of each run (20)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each run (1)")
    parser.add_argument("--upstream-fd", type=int, help=argparse.SUPPRESS)  # the counting upstream's process
    return parser.parse_args(argv)


def run_benchmark(
    args: argparse.Namespace, state: SharedState
) -> tuple[list[Run], Run, list[tuple[int, ...]], list[str]]:
    with tempfile.TemporaryDirectory(prefix="mmm-bench-routing-") as tmp:
        env = state_env(gateway_env(Path(tmp)), state)
        migrate(env)
        log_path = Path(tmp) / "gateway.log"
        with counting_upstream() as upstream_port, running_gateway(env, log_path) as gateway:
            models = {strategy: f"routing-{strategy}" for strategy in STRATEGIES}
            for strategy, model_name in models.items():
                # The default strategy runs without a policy, as a model nobody configured does.
                register(
                    gateway.port,
                    upstream_port,
                    model_name,
                    MIXED_PATHS,
                    None if strategy == DEFAULT_STRATEGY else strategy,
                )
            register(gateway.port, upstream_port, "routing-failing", FAILING_PATHS, None)
            pairs = [f"routing-pair-{n}" for n in range(PAIR_RUNS)]
            for model_name in pairs:
                register(gateway.port, upstream_port, model_name, PAIR_PATHS, None)
            time.sleep(ROUTING_REFRESH_WAIT)
            common = {
                "gateway_port": gateway.port,
                "upstream_port": upstream_port,
                "warmup": args.warmup,
                "duration": args.duration,
            }
            strategy_runs = [
                measure(
                    label=strategy + (" (default)" if strategy == DEFAULT_STRATEGY else ""),
                    model_name=model_name,
                    paths=MIXED_PATHS,
                    **common,
                )
                for strategy, model_name in models.items()
            ]
            failing = measure(
                label=f"/failing answers 500, {DEFAULT_STRATEGY}",
                model_name="routing-failing",
                paths=FAILING_PATHS,
                **common,
            )
            splits = [
                sequential_split(gateway_port=gateway.port, upstream_port=upstream_port, model_name=model_name)
                for model_name in pairs
            ]
            problems = error_lines([*strategy_runs, failing], log_path)
    return strategy_runs, failing, splits, problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.upstream_fd is not None:
        asyncio.run(serve_upstream(socket.socket(fileno=args.upstream_fd)))
        return 0
    state = shared_state()
    print(f"mmm routing benchmark: {state.describe()}", file=sys.stderr)
    load_before = os.getloadavg()[0]
    try:
        strategy_runs, failing, splits, problems = run_benchmark(args, state)
    except SetupError as exc:
        print(f"routing benchmark setup failed: {exc}", file=sys.stderr)
        return 1
    finally:
        delete_state(state)
    print(state.describe())
    # The gateway, the upstream and the load generator share the CPUs with whatever else runs.
    print(
        f"{os.cpu_count()} CPUs, load average (1 min) {load_before:.1f} before the run, {os.getloadavg()[0]:.1f} after"
    )
    print()
    print(strategy_table(strategy_runs))
    print()
    print(failing_table(failing))
    print()
    print("\n".join(target_lines(strategy_runs, failing)))
    print("\n".join(pair_lines(splits)))
    print("what the gateway saw:")
    print("\n".join(line for run in [*strategy_runs, failing] for line in traffic_lines(run)))
    if problems:
        print("\n".join(problems))
    # A missed target is a result worth reading, not a failed run.
    return 0


if __name__ == "__main__":
    sys.exit(main())
