"""The gateway against its peers, one run on this machine: ``python -m bench.compare`` (``make bench``).

One fake upstream process (bench.upstream: the seed's answer on ``/fast``, an OpenAI-compatible
chat on ``/v1/chat/completions``, whole or streamed) is called directly, through nginx as a plain
keep-alive proxy (the cost of one hop), through mmm's seed endpoint and its ``/v1`` as
``make serve`` runs them (keys off), and, where they install, through LiteLLM's proxy (pip, in a
venv of its own under var/bench/) and Portkey's gateway (npm, under var/bench/). Each system runs
alone, so its processes' CPU time over a run is its own.

Per system: wrk at c=1 (p50 and p99; "added" is the p50 less the direct call's to the same path)
and at c=32 (req/s, and CPU per request: the system's processes' user + system CPU time over
that run divided by the requests wrk completed), the RSS of its processes after the c=32 run, and
the time to a stream's first body byte, added to the direct stream's, at c=1 and c=16.

Each system is measured alone, but none is stopped until the end: after the first pass, the c=32
run is repeated ``--rounds`` times in all, the systems taking turns (in reverse order, then in
order, ...), so a slow minute of this shared machine falls on every system alike. The req/s and
CPU per request printed are the median of a system's rounds; each throughput ratio is the median
of the ratios of one round's runs, printed with every round's own.

Everything is on loopback, every run is bounded in time, and everything started is stopped. A
system that cannot be installed or started is skipped with the reason printed.
"""

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from bench.run import (
    ROOT,
    SetupError,
    call_json,
    free_port,
    gateway_env,
    migrate,
    process_tree_rss,
    running_gateway,
    stop_process,
    upstream_process,
    vm_rss,
)

VAR_BENCH = ROOT / "var" / "bench"
LITELLM_VERSION = "1.108.0"  # 1.107.0 was a compromised release; 1.108's proxy extras install here
PORTKEY_VERSION = "1.15.2"
CHAT_PATH = "/v1/chat/completions"
SEED_PATH = "/fast"
STREAM_CHUNKS, STREAM_SECONDS = 3, 0.05  # first event at once: the time to it is the hop's
CHAT_BODY = {"model": "bench", "messages": [{"role": "user", "content": "hello"}]}
SEED_BODY = {"input": "hello", "model_name": "bench-fast"}
STARTUP_TIMEOUT = 120.0  # LiteLLM's proxy takes tens of seconds to import on a loaded machine
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Call:
    """What a system is sent: one POST, and the direct call it adds to."""

    path: str
    body: dict
    headers: dict[str, str] = field(default_factory=dict)
    baseline: str = "seed"  # "seed" or "chat": which direct call this one's p50 is compared with


@dataclass(frozen=True)
class System:
    name: str
    port: int
    pid: int | None  # the root of its processes, None for the direct calls (nothing in between)
    whole: Call
    stream: Call | None  # None when it has no streamed form


@dataclass
class Row:
    name: str
    baseline: str
    p50_c1: float = math.nan
    p99_c1: float = math.nan
    rps_c32: float = math.nan
    cpu_ms: float = math.nan
    rss_mib: float = math.nan
    errors: int = 0
    ttfb_c1: float = math.nan
    ttfb_c16: float = math.nan
    note: str = ""
    rps_rounds: list[float] = field(default_factory=list)  # one per c=32 round, in round order
    cpu_rounds: list[float] = field(default_factory=list)


# --- Processes ------------------------------------------------------------------------------


def process_tree(root_pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, pending = [], [root_pid]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def gunicorn_rss(root_pid: int) -> int:
    """Summed RSS in bytes of the gunicorn processes (master and workers) of ``root_pid``'s tree."""
    total = 0
    for pid in process_tree(root_pid):
        with suppress(OSError):
            if b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes():
                total += vm_rss(pid)
    return total


def cpu_seconds(root_pid: int) -> float:
    """User + system CPU time of ``root_pid`` and its live descendants, in seconds."""
    return sum(cpu_by_role(root_pid).values())


# A process of mmm's tree, by what its command line holds (the first that matches).
_ROLES = (
    ("host state", b"inference.host_state"),
    ("job runner", b"run_jobs"),
    ("webhook sender", b"deliver_webhooks"),
    ("engine scraper", b"scrape_engines"),
    ("gunicorn", b"gunicorn"),
)


def cpu_by_role(root_pid: int) -> dict[str, float]:
    """User + system CPU seconds of ``root_pid``'s live tree, summed by role (``_ROLES``; else "other")."""
    seconds: dict[str, float] = {}
    for pid in process_tree(root_pid):
        with suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            role = next((name for name, needle in _ROLES if needle in cmdline), "other")
            # utime, stime (fields 14 and 15 of stat)
            seconds[role] = seconds.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return seconds


def wait_for_port(port: int, process: subprocess.Popen, *, what: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SetupError(f"{what} exited with {process.returncode}: {tail(log)}")
        with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise SetupError(f"{what} did not listen on {port} within {timeout:g} s: {tail(log)}")


def tail(path: Path, lines: int = 15) -> str:
    with suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


@contextmanager
def started(command: list[str], *, what: str, port: int, log: Path, env: dict | None = None, cwd=None):
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )
    try:
        wait_for_port(port, process, what=what, log=log, timeout=STARTUP_TIMEOUT)
        yield process
    finally:
        stop_process(process)


def ensure_debian_package(command: str, package: str) -> str | None:
    """The path of ``command``, installing Debian's ``package`` first if it is missing."""
    found = shutil.which(command) or shutil.which(command, path="/usr/sbin:/sbin")
    if found or shutil.which("apt-get") is None:
        return found
    print(f"  installing {package} with apt-get ...", file=sys.stderr, flush=True)
    # policy-rc.d exit 101 keeps the package's service from starting: nginx would take port 80.
    policy = Path("/usr/sbin/policy-rc.d")
    wrote_policy = not policy.exists()
    try:
        if wrote_policy:
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", package], env=env, capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        if wrote_policy:
            policy.unlink(missing_ok=True)
    return shutil.which(command) or shutil.which(command, path="/usr/sbin:/sbin")


# --- The systems ------------------------------------------------------------------------------


NGINX_CONF = """
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream fake {{ server 127.0.0.1:{upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://fake;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""


@contextmanager
def nginx(upstream: int, tmp: Path) -> Iterator[System]:
    binary = ensure_debian_package("nginx", "nginx-light")
    if binary is None:
        raise SetupError("nginx is not installed and apt-get could not install it")
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, upstream=upstream, port=port))
    with started([binary, "-p", str(tmp), "-c", str(conf)], what="nginx", port=port, log=tmp / "nginx.log") as p:
        yield System(
            "nginx",
            port,
            p.pid,
            Call(SEED_PATH, SEED_BODY),
            Call(CHAT_PATH, {**CHAT_BODY, "stream": True}, baseline="chat"),
        )


@contextmanager
def mmm(upstream: int, tmp: Path, extra_env: dict[str, str]) -> Iterator[tuple[System, System]]:
    """The gateway as ``make serve`` runs it: its seed endpoint and its /v1, one process tree."""
    env = {**gateway_env(tmp), **extra_env}
    migrate(env)
    with running_gateway(env, tmp / "mmm.log") as gateway:
        for worker in (
            {
                "model_name": "bench-fast",
                "req_url_template": f"http://127.0.0.1:{upstream}{SEED_PATH}",
                "body": {"input": "{USER_PROMPT}", "model_name": "{MODEL_NAME}"},
                "response_extract": "data.items[].attributes.answer",
                "timeout": 30,
            },
            {"model_name": "bench", "preset": "openai", "base_url": f"http://127.0.0.1:{upstream}/v1", "timeout": 30},
        ):
            status, answer = call_json(gateway.port, "POST", "/api/server/register", worker)
            if status != 200:
                raise SetupError(f"registering {worker['model_name']} on mmm failed: HTTP {status} {answer}")
        seed = System("mmm seed", gateway.port, gateway.process.pid, Call("/api/v1/chat/completions", SEED_BODY), None)
        v1 = System(
            "mmm /v1",
            gateway.port,
            gateway.process.pid,
            Call(CHAT_PATH, CHAT_BODY, baseline="chat"),
            Call(CHAT_PATH, {**CHAT_BODY, "stream": True}, baseline="chat"),
        )
        yield seed, v1


def portkey_installed() -> Path:
    home = VAR_BENCH / "portkey"
    script = home / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    if script.exists():
        return script
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise SetupError("Node.js and npm are not installed")
    print(f"  installing @portkey-ai/gateway@{PORTKEY_VERSION} with npm ...", file=sys.stderr, flush=True)
    home.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", f"@portkey-ai/gateway@{PORTKEY_VERSION}"],
        cwd=home,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0 or not script.exists():
        raise SetupError(f"npm install failed: {done.stderr[-500:]}")
    return script


@contextmanager
def portkey(upstream: int, tmp: Path) -> Iterator[System]:
    script = portkey_installed()
    port = free_port()
    env = {**os.environ, "NODE_ENV": "production"}
    command = ["node", str(script), f"--port={port}", "--headless"]
    with started(command, what="Portkey", port=port, log=tmp / "portkey.log", env=env) as process:
        # Its documented way to reach an OpenAI-compatible server: the provider and a custom host.
        headers = {
            "x-portkey-provider": "openai",
            "x-portkey-custom-host": f"http://127.0.0.1:{upstream}/v1",
            "Authorization": "Bearer sk-bench",
        }
        yield System(
            "Portkey",
            port,
            process.pid,
            Call(CHAT_PATH, CHAT_BODY, headers, baseline="chat"),
            Call(CHAT_PATH, {**CHAT_BODY, "stream": True}, headers, baseline="chat"),
        )


def litellm_installed() -> Path:
    venv = VAR_BENCH / "litellm-venv"
    binary = venv / "bin" / "litellm"
    if binary.exists():
        return binary
    print(f"  installing litellm[proxy]=={LITELLM_VERSION} in {venv} ...", file=sys.stderr, flush=True)
    python = shutil.which("python3.11") or sys.executable
    try:
        subprocess.run([python, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
        done = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"],
            capture_output=True,
            text=True,
            timeout=900,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise SetupError(f"could not make LiteLLM's venv: {exc}") from None
    if done.returncode != 0 or not binary.exists():
        raise SetupError(f"pip install failed: {done.stderr[-500:]}")
    return binary


LITELLM_KEY = "sk-bench-master-key-of-this-run-only"  # loopback only, gone with the run
LITELLM_CONFIG = """
model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench
      api_base: http://127.0.0.1:{upstream}/v1
      api_key: sk-bench
litellm_settings:
  telemetry: false
"""


@contextmanager
def litellm(upstream: int, tmp: Path) -> Iterator[System]:
    binary = litellm_installed()
    port = free_port()
    config = tmp / "litellm.yaml"
    config.write_text(LITELLM_CONFIG.format(upstream=upstream))
    # Two workers, as its docs advise for production; no database, logging quiet. It refuses to
    # start without a master key, so clients send one, as they would to a real deployment.
    command = [str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "2"]
    env = {
        **os.environ,
        "LITELLM_MASTER_KEY": LITELLM_KEY,
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "NO_DOCS": "True",
    }
    env.pop("DATABASE_URL", None)
    headers = {"Authorization": f"Bearer {LITELLM_KEY}"}
    with started(command, what="LiteLLM", port=port, log=tmp / "litellm.log", env=env, cwd=tmp) as process:
        yield System(
            "LiteLLM",
            port,
            process.pid,
            Call(CHAT_PATH, CHAT_BODY, headers, baseline="chat"),
            Call(CHAT_PATH, {**CHAT_BODY, "stream": True}, headers, baseline="chat"),
        )


# --- Load ------------------------------------------------------------------------------------


def lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal for ASCII text


def wrk_script(call: Call, directory: Path) -> Path:
    headers = {"Content-Type": "application/json", **call.headers}
    lines = ['wrk.method = "POST"', f"wrk.body = {lua_string(json.dumps(call.body))}"]
    lines += [f"wrk.headers[{lua_string(name)}] = {lua_string(value)}" for name, value in headers.items()]
    path = directory / f"wrk-{abs(hash((call.path, json.dumps(call.body), tuple(headers.items()))))}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> WrkResult:
    def latency(label: str) -> float:
        found = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        return float(found.group(1)) * _UNITS[found.group(2)] if found else math.nan

    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    if not done:
        raise SetupError(f"wrk printed no summary:\n{output[-500:]}")
    seconds = float(done.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[done.group(3)]
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return WrkResult(int(done.group(1)), seconds, latency("50"), latency("99"), errors)


def wrk(binary: str, port: int, call: Call, *, connections: int, seconds: float, tmp: Path) -> WrkResult:
    command = [
        binary,
        f"-t{min(2, connections)}",
        f"-c{connections}",
        f"-d{max(1, math.ceil(seconds))}s",  # wrk takes whole seconds
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(wrk_script(call, tmp)),
        f"http://127.0.0.1:{port}{call.path}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    return parse_wrk(done.stdout)


async def first_byte_seconds(port: int, call: Call, timeout: float) -> float | None:
    """Seconds from sending a streamed request to the first byte of its body; None on failure."""
    body = json.dumps(call.body).encode()
    headers = {"Content-Type": "application/json", **call.headers}
    head = f"POST {call.path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    head += f"Content-Length: {len(body)}\r\n\r\n"
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            began = time.perf_counter()
            writer.write(head.encode() + body)
            response_head = await reader.readuntil(b"\r\n\r\n")
            if b" 200 " not in response_head.split(b"\r\n", 1)[0] + b" ":
                return None
            await reader.readexactly(1)
            first = time.perf_counter() - began
            while await reader.read(65536):  # the rest of the stream, so it ends as a client's would
                pass
            return first
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        return None
    finally:
        if writer is not None:
            writer.close()


async def stream_users(port: int, call: Call, *, concurrency: int, seconds: float) -> tuple[list[float], int]:
    times: list[float] = []
    failures = 0
    until = time.perf_counter() + seconds

    async def user() -> None:
        nonlocal failures
        while time.perf_counter() < until:
            value = await first_byte_seconds(port, call, timeout=10.0)
            if value is None:
                failures += 1
                await asyncio.sleep(0.05)
            else:
                times.append(value)

    await asyncio.gather(*(user() for _ in range(concurrency)))
    return times, failures


def median_ms(values: list[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[len(ordered) // 2] * 1000


# --- The run ----------------------------------------------------------------------------------


def measure(system: System, args: argparse.Namespace, tmp: Path, binary: str) -> Row:
    row = Row(system.name, system.whole.baseline)
    print(f"  {system.name}: c=1 ...", file=sys.stderr, flush=True)
    wrk(binary, system.port, system.whole, connections=1, seconds=args.warmup, tmp=tmp)
    single = wrk(binary, system.port, system.whole, connections=1, seconds=args.duration, tmp=tmp)
    row.p50_c1, row.p99_c1, row.errors = single.p50_ms, single.p99_ms, single.errors
    print(f"  {system.name}: c=32 ...", file=sys.stderr, flush=True)
    busy, spent = busy_round(system, args, tmp, binary)
    record_round(row, busy, spent)
    if system.pid:
        row.rss_mib = process_tree_rss(system.pid)[0] / 2**20
        if system.name.startswith("mmm"):
            # The figure is gunicorn's master and workers; the host-state server and the
            # sidecars make serve starts (job runner, webhook sender, engine scraper) are apart.
            web = gunicorn_rss(system.pid) / 2**20
            row.note += f"RSS {web:.0f} MiB for gunicorn's master and workers, {row.rss_mib - web:.0f} for the rest; "
            row.rss_mib = web
    row.errors += busy.errors
    if system.stream is not None:
        print(f"  {system.name}: stream first byte ...", file=sys.stderr, flush=True)
        for concurrency in (1, 16):
            times, failures = asyncio.run(
                stream_users(system.port, system.stream, concurrency=concurrency, seconds=args.stream_duration)
            )
            if concurrency == 1:
                row.ttfb_c1 = median_ms(times)
            else:
                row.ttfb_c16 = median_ms(times)
            if failures:
                row.note += f"{failures} failed streams at c={concurrency}; "
    return row


def busy_round(system: System, args: argparse.Namespace, tmp: Path, binary: str) -> tuple[WrkResult, dict]:
    """One c=32 run after its warm-up: wrk's result and the CPU seconds each of the system's roles spent."""
    wrk(binary, system.port, system.whole, connections=32, seconds=args.warmup, tmp=tmp)
    cpu_before = cpu_by_role(system.pid) if system.pid else {}
    busy = wrk(binary, system.port, system.whole, connections=32, seconds=args.duration, tmp=tmp)
    spent = {}
    if system.pid:
        spent = {role: seconds - cpu_before.get(role, 0.0) for role, seconds in cpu_by_role(system.pid).items()}
    return busy, spent


def record_round(row: Row, busy: WrkResult, spent: dict[str, float]) -> None:
    requests = max(busy.requests, 1)
    row.rps_rounds.append(busy.per_second)
    row.rps_c32 = statistics.median(row.rps_rounds)
    if spent:
        row.cpu_rounds.append(sum(spent.values()) * 1000 / requests)
        row.cpu_ms = statistics.median(row.cpu_rounds)
        if row.name.startswith("mmm") and len(row.cpu_rounds) == 1:
            row.note += (
                "CPU ms per request by process: "
                + ", ".join(f"{role} {s * 1000 / requests:.3f}" for role, s in sorted(spent.items()))
                + "; "
            )


def more_rounds(measured: list[tuple[System, Row]], args: argparse.Namespace, tmp: Path, binary: str) -> None:
    """Rounds 2.. of the c=32 runs, the systems taking turns: reversed, then in order, and so on."""
    for number in range(2, args.rounds + 1):
        order = list(reversed(measured)) if number % 2 == 0 else measured
        for system, row in order:
            print(f"  {system.name}: c=32, round {number} of {args.rounds} ...", file=sys.stderr, flush=True)
            busy, spent = busy_round(system, args, tmp, binary)
            record_round(row, busy, spent)
            row.errors += busy.errors


SYSTEMS: dict[str, Callable] = {"nginx": nginx, "portkey": portkey, "litellm": litellm}


def run(args: argparse.Namespace) -> list[Row]:
    binary = ensure_debian_package("wrk", "wrk")
    if binary is None:
        raise SetupError("wrk is not installed and apt-get could not install it")
    rows: list[Row] = []
    chats = [f"--chat={CHAT_PATH}={STREAM_CHUNKS}:{STREAM_SECONDS}", f"{SEED_PATH}=0"]
    with (
        tempfile.TemporaryDirectory(prefix="mmm-compare-") as name,
        upstream_process("bench.upstream", fd_flag="--fd", args=chats) as upstream,
    ):
        tmp = Path(name)
        direct_seed = System("direct (seed path)", upstream, None, Call(SEED_PATH, SEED_BODY), None)
        direct_chat = System(
            "direct (chat path)",
            upstream,
            None,
            Call(CHAT_PATH, CHAT_BODY, baseline="chat"),
            Call(CHAT_PATH, {**CHAT_BODY, "stream": True}, baseline="chat"),
        )
        rows += [measure(direct_seed, args, tmp, binary), measure(direct_chat, args, tmp, binary)]
        measured: list[tuple[System, Row]] = []
        with ExitStack() as running:  # every system started stays up until the last round
            for name_ in args.systems:
                directory = tmp / name_
                directory.mkdir()
                try:
                    with ExitStack() as stack:  # a system that fails is stopped at once
                        if name_ == "mmm":
                            systems = stack.enter_context(mmm(upstream, directory, args.mmm_env))
                        else:
                            systems = (stack.enter_context(SYSTEMS[name_](upstream, directory)),)
                        done = [(system, measure(system, args, tmp, binary)) for system in systems]
                        running.enter_context(stack.pop_all())
                except SetupError as exc:
                    print(f"  {name_} skipped: {exc}", file=sys.stderr, flush=True)
                    said = [line for line in str(exc).splitlines() if line.strip()] or ["no reason given"]
                    rows.append(Row(name_, "", note=f"skipped: {said[0][:200]}"))
                    continue
                measured += done
                rows += [row for _, row in done]
            more_rounds(measured, args, tmp, binary)
    return rows


def cell(value: float, digits: int = 2, signed: bool = False) -> str:
    return "" if math.isnan(value) else f"{value:{'+' if signed else ''}.{digits}f}"


def table(rows: list[Row]) -> str:
    direct = {row.baseline: row for row in rows if row.name.startswith("direct")}
    lines = [
        "| | added p50 at c=1 (ms) | p99 at c=1 (ms) | req/s at c=32 | CPU per request (ms) | RSS after c=32 (MiB) "
        "| stream first-byte added, c=1 / c=16 (ms) | errors | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        base, streamed = direct.get(row.baseline), direct.get("chat")  # every stream is a chat
        if row.name.startswith("direct") or base is None:
            added, ttfb = cell(row.p50_c1) + " (p50)", f"{cell(row.ttfb_c1)} / {cell(row.ttfb_c16)} (itself)"
        else:
            added = cell(row.p50_c1 - base.p50_c1, signed=True)
            ttfb = (
                f"{cell(row.ttfb_c1 - streamed.ttfb_c1, signed=True)} / "
                f"{cell(row.ttfb_c16 - streamed.ttfb_c16, signed=True)}"
                if streamed is not None and not math.isnan(row.ttfb_c1)
                else ""
            )
        lines.append(
            f"| {row.name} | {added} | {cell(row.p99_c1)} | {cell(row.rps_c32, 0)} | {cell(row.cpu_ms, 3)} "
            f"| {cell(row.rss_mib, 0)} | {ttfb} | {row.errors} | {row.note} |"
        )
    return "\n".join(lines)


def ratios(rows: list[Row]) -> list[str]:
    """Each ratio is the median over rounds of one round's two runs, which ran minutes apart at most."""
    by_name = {row.name: row for row in rows}
    lines = []
    for mine in ("mmm seed", "mmm /v1"):
        for peer in ("Portkey", "LiteLLM", "nginx"):
            if mine not in by_name or peer not in by_name or not by_name[peer].rps_rounds:
                continue
            each = [
                ours / theirs for ours, theirs in zip(by_name[mine].rps_rounds, by_name[peer].rps_rounds, strict=True)
            ]
            rounds = ", ".join(f"{ratio:.2f}x" for ratio in each)
            lines.append(f"{mine} req/s at c=32 / {peer}'s: {statistics.median(each):.2f}x (rounds: {rounds})")
    return lines


def cpu_rounds(rows: list[Row]) -> list[str]:
    return [
        f"{row.name} CPU ms per request at c=32, rounds: " + ", ".join(f"{ms:.3f}" for ms in row.cpu_rounds)
        for row in rows
        if len(row.cpu_rounds) > 1
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds of each wrk run (8)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each wrk run (2)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="c=32 runs per system, the systems taking turns; the median is printed (3)",
    )
    parser.add_argument("--stream-duration", type=float, default=3.0, help="seconds of streams at c=1 and c=16 (3)")
    parser.add_argument(
        "--systems",
        default="nginx,mmm,portkey,litellm",
        help="which systems besides the direct calls, in order (nginx,mmm,portkey,litellm)",
    )
    parser.add_argument(
        "--mmm-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the gateway (e.g. MMM_SHARED_HOST_STATE=false); repeatable",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the rows to this file")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    args.mmm_env = dict(pair.partition("=")[::2] for pair in args.mmm_env)
    args.systems = [name.strip() for name in args.systems.split(",") if name.strip()]
    unknown = set(args.systems) - {"mmm", *SYSTEMS}
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load = os.getloadavg()[0]
    try:
        rows = run(args)
    except SetupError as exc:
        print(f"benchmark setup failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"\nOne run, {args.duration:g} s per wrk run, c=32 figures the median of {args.rounds} rounds, "
        f"load average {load:.1f} at the start:\n"
    )
    print(table(rows))
    print()
    print("\n".join(ratios(rows)))
    print("\n".join(cpu_rounds(rows)))
    if args.json:
        args.json.write_text(json.dumps([row.__dict__ for row in rows], indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
