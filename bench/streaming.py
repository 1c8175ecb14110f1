"""Streaming benchmark: ``python -m bench.streaming`` (the last step of ``make bench``).

One gateway (gunicorn with mmm/gunicorn.conf.py, as ``make serve`` runs it) in front of a fake
OpenAI-compatible upstream that streams each chat completion as 20 chunks over 2 s. It
measures the time to first byte of a stream, directly and through the gateway, a few streams at
a time; then holds 1,000 concurrent streams through the gateway for a while, counting errors
(a non-200, a stream without its [DONE], an error event, a timeout) and sampling the gateway's
memory. It prints a markdown table and stops everything it started.
"""

import argparse
import asyncio
import json
import math
import os
import resource
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.run import SetupError, call_json, fake_upstream, gateway_env, migrate, process_tree_rss, running_gateway

CHAT_PATH = "/v1/chat/completions"
CHUNKS, STREAM_SECONDS = 20, 2.0
MODEL = "bench-stream"


@dataclass
class StreamResult:
    ttfb: list[float] = field(default_factory=list)  # seconds from request to the first body byte
    durations: list[float] = field(default_factory=list)  # seconds from request to the end of the stream
    errors: Counter[str] = field(default_factory=Counter)

    def percentile_ms(self, values: list[float], fraction: float) -> float:
        if not values:
            return math.nan
        ordered = sorted(values)
        return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] * 1000


def request_bytes(port: int) -> bytes:
    body = json.dumps({"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hello"}]}).encode()
    head = (
        f"POST {CHAT_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_chunked(reader: asyncio.StreamReader, started: float) -> tuple[float, bytes]:
    """(time to the first body byte, the whole body) of a chunked response."""
    first_byte = None
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if first_byte is None:
            first_byte = time.perf_counter() - started
        if size == 0:
            await reader.readuntil(b"\r\n")
            return first_byte, bytes(body)
        body += await reader.readexactly(size + 2)
        del body[-2:]


async def one_stream(port: int, request: bytes, timeout: float, result: StreamResult) -> None:
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            if status != 200:
                result.errors[f"HTTP {status}"] += 1
                return
            if b"transfer-encoding: chunked" not in head.lower():
                result.errors["response not chunked"] += 1
                return
            ttfb, body = await read_chunked(reader, started)
        if b'"error"' in body:
            result.errors["error event"] += 1
        elif not body.endswith(b"data: [DONE]\n\n") or body.count(b"data: ") != CHUNKS + 1:
            result.errors["incomplete stream"] += 1
        else:
            result.ttfb.append(ttfb)
            result.durations.append(time.perf_counter() - started)
    except TimeoutError:
        result.errors["timeout"] += 1
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        result.errors[f"connection: {type(exc).__name__}"] += 1
    finally:
        if writer is not None:
            writer.close()


async def user(port: int, start_at: float, until: float, timeout: float, result: StreamResult) -> None:
    """Open streams one after another from ``start_at`` until ``until``."""
    await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
    request = request_bytes(port)
    while time.perf_counter() < until:
        await one_stream(port, request, timeout, result)


async def load(port: int, *, concurrency: int, ramp: float, duration: float, timeout: float) -> StreamResult:
    result = StreamResult()
    now = time.perf_counter()
    await asyncio.gather(
        *(user(port, now + ramp * i / concurrency, now + ramp + duration, timeout, result) for i in range(concurrency))
    )
    return result


class MemorySampler(threading.Thread):
    """The gateway's summed RSS every ``interval`` seconds; ``peak`` is the highest seen."""

    def __init__(self, pid: int, interval: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.processes = 0
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(self.interval):
            rss, processes = process_tree_rss(self.pid)
            if rss > self.peak:
                self.peak, self.processes = rss, processes

    def stop(self) -> None:
        self._stopping.set()
        self.join()


def raise_fd_limit() -> int:
    """Each stream holds a socket in the load generator, two in the gateway and one upstream."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def row(name: str, concurrency: int, result: StreamResult) -> str:
    return (
        f"| {name} | {concurrency} | {len(result.durations)} | {result.percentile_ms(result.ttfb, 0.5):.1f} "
        f"| {result.percentile_ms(result.ttfb, 0.99):.1f} | {result.percentile_ms(result.durations, 0.5):.0f} "
        f"| {result.percentile_ms(result.durations, 0.99):.0f} | {sum(result.errors.values())} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.streaming", description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=1000, help="concurrent streams through the gateway (1000)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds the concurrent streams are held (10)")
    parser.add_argument("--ramp", type=float, default=2.0, help="seconds over which the streams start (2)")
    parser.add_argument("--ttfb-concurrency", type=int, default=5, help="concurrent streams of the TTFB runs (5)")
    parser.add_argument("--ttfb-duration", type=float, default=5.0, help="seconds of each TTFB run (5)")
    args = parser.parse_args(argv)
    fds = raise_fd_limit()
    print(f"streaming benchmark on {os.cpu_count()} CPUs, open files limit {fds}", file=sys.stderr)
    single_timeout = STREAM_SECONDS * 5

    with tempfile.TemporaryDirectory(prefix="mmm-bench-stream-") as tmp:
        env = gateway_env(Path(tmp))
        # Every concurrent stream keeps its upstream connection; past the pool size urllib3
        # would open and discard connections (and log a warning for each).
        env["MMM_UPSTREAM_POOL_SIZE"] = str(max(args.concurrency, 256))
        try:
            migrate(env)
            with fake_upstream([f"--stream={CHAT_PATH}={CHUNKS}:{STREAM_SECONDS}"]) as upstream_port:
                with running_gateway(env, Path(tmp) / "gateway-stream.log") as gateway:
                    worker = {
                        "model_name": MODEL,
                        "preset": "openai",
                        "base_url": f"http://127.0.0.1:{upstream_port}/v1",
                        "timeout": 30,
                    }
                    status, answer = call_json(gateway.port, "POST", "/api/server/register", worker)
                    if status != 200:
                        raise SetupError(f"registering {MODEL} failed: HTTP {status} {answer}")
                    print(f"  time to first byte at c={args.ttfb_concurrency} ...", file=sys.stderr, flush=True)
                    few = {
                        "concurrency": args.ttfb_concurrency,
                        "ramp": 1.0,
                        "duration": args.ttfb_duration,
                        "timeout": single_timeout,
                    }
                    direct = asyncio.run(load(upstream_port, **few))
                    through = asyncio.run(load(gateway.port, **few))
                    print(
                        f"  {args.concurrency} concurrent streams for {args.duration:g} s ...",
                        file=sys.stderr,
                        flush=True,
                    )
                    sampler = MemorySampler(gateway.process.pid)
                    idle_rss, processes = process_tree_rss(gateway.process.pid)
                    sampler.start()
                    held = asyncio.run(
                        load(
                            gateway.port,
                            concurrency=args.concurrency,
                            ramp=args.ramp,
                            duration=args.duration,
                            timeout=STREAM_SECONDS * 15,
                        )
                    )
                    sampler.stop()
        except SetupError as exc:
            print(f"benchmark setup failed: {exc}", file=sys.stderr)
            return 1

    print("| target | concurrency | streams | TTFB p50 ms | TTFB p99 ms | stream p50 ms | stream p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print(row("direct", args.ttfb_concurrency, direct))
    print(row("gateway (gevent)", args.ttfb_concurrency, through))
    print(row("gateway (gevent)", args.concurrency, held))
    print()
    added = through.percentile_ms(through.ttfb, 0.5) - direct.percentile_ms(direct.ttfb, 0.5)
    print(f"time to first byte through the gateway: +{added:.2f} ms at p50 over direct (c={args.ttfb_concurrency})")
    print(
        f"{args.concurrency} concurrent streams of {CHUNKS} chunks over {STREAM_SECONDS:g} s: "
        f"{len(held.durations)} completed, {sum(held.errors.values())} errors {dict(held.errors) or ''} (target: 0)"
    )
    print(
        f"gateway memory: {idle_rss / 2**20:.0f} MiB before, peak {sampler.peak / 2**20:.0f} MiB RSS while holding "
        f"the streams (gunicorn master + {processes - 1} workers)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
