"""Two trees' gateways measured in pairs at c=1: ``python -m bench.paired TREE_A TREE_B``.

On a machine whose speed swings by a factor of three between runs minutes apart, two whole
``bench.compare`` runs cannot show a change of a tenth of a millisecond. This starts each tree's
gateway (with its own fake upstream, as ``bench.compare`` starts them: each tree's own code,
run by each tree's ``.venv``) side by side, then sends one request to A and one to B, in
alternating order, each on its own kept-alive connection, ``--requests`` times, for the seed
endpoint and for ``/v1``, so both see the same machine at the same moments. It prints each
one's p50, p90 and p99, the CPU time its gunicorn processes (master and workers) spent per
request over the measured requests, and B minus A. A tree is a checkout with ``.venv`` (a symlink will do).
"""

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.compare import cpu_by_role

SERVE = """
import sys, tempfile
from pathlib import Path
from bench.compare import CHAT_PATH, SEED_PATH, STREAM_CHUNKS, STREAM_SECONDS, mmm, upstream_process
chats = [f"--chat={CHAT_PATH}={STREAM_CHUNKS}:{STREAM_SECONDS}", f"{SEED_PATH}=0"]
with tempfile.TemporaryDirectory() as name, upstream_process("bench.upstream", fd_flag="--fd", args=chats) as up:
    with mmm(up, Path(name), {}) as (seed, v1):
        print(seed.port, seed.pid, flush=True)
        sys.stdin.read()  # until the parent closes it
"""
CALLS = [
    ("seed", "/api/v1/chat/completions", {"input": "hello", "model_name": "bench-fast"}),
    ("/v1", "/v1/chat/completions", {"model": "bench", "messages": [{"role": "user", "content": "hello"}]}),
]
WARMUP = 300
TIMEOUT = 30.0  # per answer


def start(tree: Path) -> tuple[subprocess.Popen, int, int]:
    process = subprocess.Popen(
        [str(tree / ".venv/bin/python"), "-c", SERVE],
        cwd=tree,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()  # bench.compare's own start-up deadline bounds this
    words = line.split()
    if len(words) != 2 or not all(word.isdigit() for word in words):
        process.kill()
        raise SystemExit(f"the gateway of {tree} did not start (it printed {line!r})")
    return process, int(words[0]), int(words[1])


def gunicorn_cpu_seconds(gunicorn_pid: int) -> float:
    return cpu_by_role(gunicorn_pid).get("gunicorn", 0.0)


def request_bytes(path: str, body: dict) -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


def call(connection: socket.socket, data: bytes) -> float:
    """Milliseconds from writing the request to reading the whole answer (Content-Length)."""
    started = time.perf_counter()
    connection.sendall(data)
    received = b""
    while b"\r\n\r\n" not in received:
        received += recv(connection)
    head, _, body = received.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"the gateway answered {head.splitlines()[0]!r}")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += recv(connection)
    return (time.perf_counter() - started) * 1000


def recv(connection: socket.socket) -> bytes:
    chunk = connection.recv(65536)
    if not chunk:
        raise SystemExit("the gateway closed the connection")
    return chunk


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.paired", description=__doc__.splitlines()[0])
    parser.add_argument("tree_a", type=Path)
    parser.add_argument("tree_b", type=Path)
    parser.add_argument("--requests", type=int, default=3000, help="measured requests per gateway and endpoint")
    parser.add_argument("--gap", type=float, default=0.0005, help="seconds between requests (0.0005)")
    args = parser.parse_args(argv)
    trees = [args.tree_a.resolve(), args.tree_b.resolve()]
    gateways = [start(tree) for tree in trees]
    try:
        print("| endpoint | tree | p50 ms | p90 ms | p99 ms | gunicorn CPU ms per request |")
        print("|---|---|---:|---:|---:|---:|")
        for label, path, body in CALLS:
            data = request_bytes(path, body)
            connections = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) for _, port, _ in gateways]
            for connection in connections:
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(WARMUP):
                for connection in connections:
                    call(connection, data)
            latencies: list[list[float]] = [[], []]
            cpu_before = [gunicorn_cpu_seconds(pid) for _, _, pid in gateways]
            for index in range(args.requests):
                for side in (0, 1) if index % 2 else (1, 0):
                    latencies[side].append(call(connections[side], data))
                    time.sleep(args.gap)
            cpu_ms = [
                (gunicorn_cpu_seconds(pid) - before) * 1000 / args.requests
                for (_, _, pid), before in zip(gateways, cpu_before, strict=True)
            ]
            for side, tree in enumerate(trees):
                values = latencies[side]
                print(
                    f"| {label} | {tree} | {statistics.median(values):.3f} | {percentile(values, 0.9):.3f} "
                    f"| {percentile(values, 0.99):.3f} | {cpu_ms[side]:.3f} |"
                )
            difference = statistics.median(latencies[1]) - statistics.median(latencies[0])
            print(f"| {label} | B - A | {difference:+.3f} | | | {cpu_ms[1] - cpu_ms[0]:+.3f} |")
            for connection in connections:
                connection.close()
    finally:
        for process, _, _ in gateways:
            process.stdin.close()
            process.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
