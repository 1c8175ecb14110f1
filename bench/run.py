"""Load benchmark of the gateway: ``make bench`` (``python -m bench.run``).

One run starts a fake upstream and the gateway exactly as ``make serve`` does (gunicorn with
mmm/gunicorn.conf.py), registers two models, and loads the upstream directly and then through
the gateway: a fast upstream at concurrency 1 and 32, and a 1 s upstream at concurrency 200.
Optionally it repeats the 1 s scenario on a gateway with gthread workers, to show what gevent
workers buy. It prints a markdown table and the targets, and stops everything it started.
"""

import argparse
import http.client
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from bench.loadgen import LoadResult, Target, run_load

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).with_name("gunicorn")
SLOW_SECONDS = 1.0
UPSTREAM_DELAYS = {"/fast": 0.0, "/slow": SLOW_SECONDS}
MODELS = {"bench-fast": "/fast", "bench-slow": "/slow"}
COMPLETIONS_PATH = "/api/v1/chat/completions"
GTHREAD_ARGS = ("--worker-class", "gthread", "--threads", "32")
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
DIRECT = "direct"
GEVENT = "gateway (gevent)"
GTHREAD = "gateway (gthread, 32 threads)"


class SetupError(Exception):
    """The benchmark could not start what it measures; its numbers would mean nothing."""


@dataclass(frozen=True)
class Scenario:
    name: str
    model_name: str
    concurrency: int
    duration: float


@dataclass(frozen=True)
class Measurement:
    scenario: Scenario
    target: str
    result: LoadResult

    def as_dict(self) -> dict:
        return {
            "scenario": self.scenario.name,
            "target": self.target,
            "concurrency": self.scenario.concurrency,
            "requests": len(self.result.latencies),
            "seconds": self.result.window_seconds,
            "requests_per_second": round(self.result.requests_per_second, 1),
            "p50_ms": rounded_or_none(self.result.percentile_ms(0.50)),
            "p99_ms": rounded_or_none(self.result.percentile_ms(0.99)),
            "errors": self.result.error_count,
            "error_kinds": dict(self.result.errors),
        }


def rounded_or_none(milliseconds: float) -> float | None:
    """JSON has no NaN, the percentile of a scenario without a single success."""
    return None if math.isnan(milliseconds) else round(milliseconds, 2)


@dataclass(frozen=True)
class Gateway:
    process: subprocess.Popen
    port: int
    log_path: Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds of each fast scenario (8)")
    parser.add_argument("--slow-duration", type=float, default=10.0, help="measured seconds of each 1 s scenario (10)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each scenario (1)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 s fast and 3 s slow scenarios")
    parser.add_argument(
        "--compare-workers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the 1 s scenario against gthread workers (default: on)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.slow_duration, args.warmup = 2.0, 3.0, 1.0
    return args


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    return [
        Scenario("fast upstream", "bench-fast", 1, args.duration),
        Scenario("fast upstream", "bench-fast", 32, args.duration),
        Scenario(f"{SLOW_SECONDS:g} s upstream", "bench-slow", 200, args.slow_duration),
    ]


# --- Processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM (gunicorn's graceful stop), then SIGKILL to its whole process group."""
    if process.poll() is None:
        process.terminate()
        with suppress(subprocess.TimeoutExpired):
            process.wait(STOP_TIMEOUT)
    # Each process starts its own group, so this reaches orphaned gunicorn workers and nothing else.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextmanager
def fake_upstream(specs: list[str] | None = None) -> Iterator[int]:
    """Run bench.upstream in its own process (with ``specs`` as its arguments); yields its port."""
    if specs is None:
        specs = [f"{path}={delay}" for path, delay in UPSTREAM_DELAYS.items()]
    with upstream_process("bench.upstream", fd_flag="--fd", args=specs) as port:
        yield port


@contextmanager
def upstream_process(module: str, *, fd_flag: str, args: list[str] = ()) -> Iterator[int]:
    """Run ``python -m module`` serving on a socket opened here (passed as ``fd_flag N``); yields its port."""
    # Listening here before the child starts makes the port known and connectable at once;
    # the backlog takes the gateway's burst of new upstream connections at c=200.
    with socket.create_server(("127.0.0.1", 0), backlog=1024) as sock:
        process = subprocess.Popen(
            [sys.executable, "-m", module, fd_flag, str(sock.fileno()), *args],
            cwd=ROOT,
            pass_fds=[sock.fileno()],
            start_new_session=True,
        )
        port = sock.getsockname()[1]
    try:
        yield port
    finally:
        stop_process(process)


def positive(kind):
    """An argparse type: ``kind`` of the text, refused unless above 0 (NaN too)."""

    def parse(text: str):
        value = kind(text)
        if not value > 0:  # NaN fails this too
            raise argparse.ArgumentTypeError(f"must be above 0, got {text!r}")
        return value

    return parse


def gateway_env(var_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HOST": "127.0.0.1",
        "MMM_VAR_DIR": str(var_dir),
        "DATABASE_URL": f"sqlite:///{var_dir / 'bench.sqlite3'}",
        # On loopback, as `make serve`: the seed's clients send no key. (Key checks are a
        # cached lookup per request; the benchmark measures routing and relaying.)
        "MMM_REQUIRE_AUTH": "false",
    }


def migrate(env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise SetupError(f"manage.py migrate failed:\n{done.stderr}")


def log_tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def running_gateway(env: dict[str, str], log_path: Path, extra_args: tuple[str, ...] = ()) -> Iterator[Gateway]:
    """The gateway as ``make serve`` starts it (plus ``extra_args``), stopped on leaving."""
    port = free_port()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(GUNICORN), "-c", "mmm/gunicorn.conf.py", "mmm.wsgi", *extra_args],
            cwd=ROOT,
            env={**env, "PORT": str(port)},
            stdout=log,  # a file, not a pipe nobody reads: a full pipe would stall the gateway
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            gateway = Gateway(process, port, log_path)
            wait_until_answering(gateway)
            yield gateway
        finally:
            stop_process(process)


def wait_until_answering(gateway: Gateway) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if gateway.process.poll() is not None:
            raise SetupError(f"gunicorn exited with {gateway.process.returncode}:\n{log_tail(gateway.log_path)}")
        with suppress(OSError):
            status, _ = call_json(gateway.port, "GET", "/api/server/workers")
            if status == 200:
                return
        time.sleep(0.2)
    raise SetupError(f"gateway did not answer within {STARTUP_TIMEOUT:g} s:\n{log_tail(gateway.log_path)}")


def call_json(port: int, method: str, path: str, document: dict | None = None) -> tuple[int, dict]:
    """One HTTP call with a JSON body and answer (http.client: no proxy from the environment applies)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        body = None if document is None else json.dumps(document)
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def register_models(gateway_port: int, upstream_port: int) -> None:
    for model_name, path in MODELS.items():
        worker = {
            "model_name": model_name,
            "req_url_template": f"http://127.0.0.1:{upstream_port}{path}",
            "body": {"input": "{USER_PROMPT}", "model_name": "{MODEL_NAME}"},
            "response_extract": "data.items[].attributes.answer",
            "timeout": 30,
        }
        try:
            status, answer = call_json(gateway_port, "POST", "/api/server/register", worker)
        except (OSError, ValueError) as exc:
            raise SetupError(f"registering {model_name} failed: {exc!r}") from exc
        if status != 200 or answer.get("success") is not True:
            raise SetupError(f"registering {model_name} failed: HTTP {status} {answer}")


def process_tree_rss(root_pid: int) -> tuple[int, int]:
    """(summed VmRSS in bytes, number of processes) of ``root_pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for status_file in Path("/proc").glob("[0-9]*/status"):
        with suppress(OSError):
            fields = dict(line.split(":\t", 1) for line in status_file.read_text().splitlines() if ":\t" in line)
            children.setdefault(int(fields["PPid"]), []).append(int(fields["Pid"]))
    total, count, pending = 0, 0, [root_pid]
    while pending:
        pid = pending.pop()
        with suppress(OSError):
            total += vm_rss(pid)
            count += 1
        pending.extend(children.get(pid, []))
    return total, count


def vm_rss(pid: int) -> int:
    """The resident memory of process ``pid`` in bytes (raises OSError once it is gone)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0  # a zombie has no VmRSS line


# --- Measuring and reporting ----------------------------------------------------------------


def direct_target(upstream_port: int, scenario: Scenario) -> Target:
    body = {"input": "hello", "model_name": scenario.model_name}
    return Target(port=upstream_port, path=MODELS[scenario.model_name], json_body=body)


def gateway_target(gateway_port: int, scenario: Scenario) -> Target:
    body = {"input": "hello", "model_name": scenario.model_name}
    return Target(port=gateway_port, path=COMPLETIONS_PATH, json_body=body, expect_success=True)


def measure(scenario: Scenario, target_name: str, target: Target, warmup: float) -> Measurement:
    print(f"  {target_name}: {scenario.name}, c={scenario.concurrency} ...", file=sys.stderr, flush=True)
    result = run_load(target, concurrency=scenario.concurrency, warmup=warmup, duration=scenario.duration)
    return Measurement(scenario, target_name, result)


def log_problems(path: Path, limit: int = 60) -> str:
    """The first lines of the log that are not INFO: warnings, errors and their tracebacks."""
    lines = [line for line in path.read_text(errors="replace").splitlines() if " INFO " not in line]
    return "\n".join(lines[:limit])


def report_gateway_errors(measurement: Measurement, gateway: Gateway) -> None:
    """Show what the gateway logged when a scenario through it failed requests."""
    if measurement.result.error_count:
        print(
            f"  {measurement.result.error_count} errors {dict(measurement.result.errors)}; gateway log:\n"
            f"{log_problems(gateway.log_path)}",
            file=sys.stderr,
        )


def run_benchmark(args: argparse.Namespace) -> tuple[list[Measurement], dict[str, tuple[int, int]]]:
    """All scenarios; returns the measurements and the gateway's (RSS, processes) per worker class."""
    measurements: list[Measurement] = []
    memory: dict[str, tuple[int, int]] = {}
    slow = scenarios(args)[-1]
    with tempfile.TemporaryDirectory(prefix="mmm-bench-") as tmp:
        env = gateway_env(Path(tmp))
        migrate(env)
        with fake_upstream() as upstream_port:
            with running_gateway(env, Path(tmp) / "gateway-gevent.log") as gateway:
                register_models(gateway.port, upstream_port)
                for scenario in scenarios(args):
                    measurements.append(measure(scenario, DIRECT, direct_target(upstream_port, scenario), args.warmup))
                for scenario in scenarios(args):
                    target = gateway_target(gateway.port, scenario)
                    measurements.append(measure(scenario, GEVENT, target, args.warmup))
                    report_gateway_errors(measurements[-1], gateway)
                # The c=200 scenario ran last: this is the memory holding 200 requests' connections.
                memory["gevent"] = process_tree_rss(gateway.process.pid)
            if args.compare_workers:
                # The models are in the shared database already; this gateway reads them from there.
                with running_gateway(env, Path(tmp) / "gateway-gthread.log", GTHREAD_ARGS) as gateway:
                    target = gateway_target(gateway.port, slow)
                    measurements.append(measure(slow, GTHREAD, target, args.warmup))
                    report_gateway_errors(measurements[-1], gateway)
                    memory["gthread"] = process_tree_rss(gateway.process.pid)
    return measurements, memory


def find(measurements: list[Measurement], target: str, concurrency: int) -> Measurement:
    return next(m for m in measurements if m.target == target and m.scenario.concurrency == concurrency)


def markdown_table(measurements: list[Measurement]) -> str:
    lines = [
        "| scenario | target | concurrency | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for m in measurements:
        r = m.result
        lines.append(
            f"| {m.scenario.name} | {m.target} | {m.scenario.concurrency} | {r.requests_per_second:.1f} "
            f"| {r.percentile_ms(0.50):.2f} | {r.percentile_ms(0.99):.2f} | {r.error_count} |"
        )
    return "\n".join(lines)


def target_checks(measurements: list[Measurement]) -> list[str]:
    added_ms = find(measurements, GEVENT, 1).result.percentile_ms(0.50) - find(
        measurements, DIRECT, 1
    ).result.percentile_ms(0.50)
    busy = find(measurements, GEVENT, 32).result
    slow = find(measurements, GEVENT, 200).result
    return [
        f"gateway adds {added_ms:.2f} ms at p50 at c=1 (target <= 2 ms)",
        f"gateway c=32: {busy.requests_per_second:.0f} req/s (target >= 500)",
        f"gateway c=200 vs {SLOW_SECONDS:g} s upstream: {slow.requests_per_second:.0f} req/s, "
        f"{slow.error_count} errors (target >= 150, 0 errors)",
    ]


def memory_lines(memory: dict[str, tuple[int, int]]) -> list[str]:
    return [
        f"gateway memory after the c=200 run ({worker_class}): {rss / 2**20:.1f} MiB RSS "
        f"(gunicorn master + {processes - 1} workers)"
        for worker_class, (rss, processes) in memory.items()
    ]


def error_lines(measurements: list[Measurement]) -> list[str]:
    return [
        f"errors in {m.target}, {m.scenario.name}, c={m.scenario.concurrency}: {dict(m.result.errors)}"
        for m in measurements
        if m.result.error_count
    ]


def write_json(
    path: Path,
    args: argparse.Namespace,
    measurements: list[Measurement],
    checks: list[str],
    memory: dict[str, tuple[int, int]],
) -> None:
    document = {
        "cpus": os.cpu_count(),
        "warmup_seconds": args.warmup,
        "measurements": [m.as_dict() for m in measurements],
        "targets": checks,
        "gateway_rss_bytes": {worker_class: rss for worker_class, (rss, _) in memory.items()},
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"mmm gateway benchmark on {os.cpu_count()} CPUs, Python {sys.version.split()[0]}", file=sys.stderr)
    try:
        measurements, memory = run_benchmark(args)
    except SetupError as exc:
        print(f"benchmark setup failed: {exc}", file=sys.stderr)
        return 1
    checks = target_checks(measurements)
    print(markdown_table(measurements))
    print()
    print("\n".join(checks + memory_lines(memory) + error_lines(measurements)))
    if args.json:
        write_json(args.json, args, measurements, checks, memory)
    # A missed target is a result worth reading, not a failed run.
    return 0


if __name__ == "__main__":
    sys.exit(main())
