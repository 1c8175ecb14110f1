"""What one completion costs Redis: ``python -m bench.redis_cost`` (needs Debian's redis-server).

Starts a Redis of its own (a free port, nothing saved to disk: the machine's Redis serves other
work whose commands would be counted too), the fake upstream, and the gateway as ``make serve``
runs it with ``REDIS_URL`` pointing at that Redis; sends ``--requests`` seed completions one
after another over one keep-alive connection, then reads Redis's ``INFO commandstats`` and
``INFO cpu`` (reset and read around the run) and prints the commands and the Redis CPU time per
request. The Redis CPU of an idle interval as long as the run is subtracted (its own cron). The
gateway reaches Redis through a small proxy here that counts its round trips.
"""

import argparse
import asyncio
import http.client
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis

from bench.compare import SEED_BODY, SEED_PATH, mmm, started
from bench.run import SetupError, free_port, upstream_process


class TurnCounter:
    """A TCP proxy in front of Redis that counts round trips: a client's bytes that follow a reply
    (or open the connection) start one; a pipeline of many commands is one."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.port = free_port()
        self.turns = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        if not self._ready.wait(10):
            raise SetupError("the round-trip counting proxy did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, client_reader, client_writer) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        replied = [True]

        async def pump(reader, writer, from_client: bool) -> None:
            try:
                while data := await reader.read(65536):
                    if from_client and replied[0]:
                        self.turns += 1
                    replied[0] = not from_client
                    writer.write(data)
                    await writer.drain()
            except ConnectionError:
                pass
            finally:
                writer.close()

        await asyncio.gather(pump(client_reader, server_writer, True), pump(server_reader, client_writer, False))


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="seed completions (2000)")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="clients sending them at once, each on its own connection (1)"
    )
    parser.add_argument(
        "--direct",
        action="store_true",
        help="the gateway talks to Redis directly, without the round-trip counting proxy (whose CPU "
        "then does not compete with Redis's on a small machine); round trips are not counted",
    )
    args = parser.parse_args(argv)
    binary = shutil.which("redis-server")
    if binary is None:
        print("needs redis-server (Debian's redis-server package)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="mmm-redis-cost-") as name:
        tmp = Path(name)
        port = free_port()
        command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        command += ["--dir", str(tmp)]
        counter = None if args.direct else TurnCounter(port)  # it connects to Redis once the gateway does
        redis_port = port if counter is None else counter.port
        try:
            with (
                started(command, what="redis-server", port=port, log=tmp / "redis.log"),
                upstream_process("bench.upstream", fd_flag="--fd", args=[f"{SEED_PATH}=0"]) as upstream,
                mmm(upstream, tmp, {"REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"}) as (seed, _v1),
            ):
                client = redis.Redis(host="127.0.0.1", port=port)
                body = json.dumps(SEED_BODY)
                headers = {"Content-Type": "application/json"}
                connections = [
                    http.client.HTTPConnection("127.0.0.1", seed.port, timeout=30) for _ in range(args.concurrency)
                ]

                def complete(connection: http.client.HTTPConnection) -> None:
                    connection.request("POST", seed.whole.path, body=body, headers=headers)
                    response = connection.getresponse()
                    answer = response.read()
                    if response.status != 200:
                        raise SetupError(f"the gateway answered {response.status}: {answer[:200]!r}")

                def send(count: int) -> None:
                    """``count`` completions, shared out between the clients."""
                    shares = [
                        count // len(connections) + (n < count % len(connections)) for n in range(len(connections))
                    ]

                    def client_sends(n: int) -> None:
                        for _ in range(shares[n]):
                            complete(connections[n])

                    with ThreadPoolExecutor(len(connections)) as pool:
                        list(pool.map(client_sends, range(len(connections))))

                send(200)  # warm: routing table, connections, scripts loaded
                client.config_resetstat()
                turns_before = counter.turns if counter else 0
                began, cpu_before = time.monotonic(), redis_cpu(client)
                send(args.requests)
                seconds, cpu_run = time.monotonic() - began, redis_cpu(client) - cpu_before
                turns = counter.turns - turns_before if counter else None
                stats = client.info("commandstats")
                idle_before = redis_cpu(client)
                time.sleep(min(seconds, 10.0))
                idle = (redis_cpu(client) - idle_before) * seconds / min(seconds, 10.0)
        except (SetupError, subprocess.SubprocessError, redis.RedisError) as exc:
            print(f"setup failed: {exc}", file=sys.stderr)
            return 1
    stats = {name.removeprefix("cmdstat_").upper(): value for name, value in stats.items()}
    stats = {name: value for name, value in stats.items() if not name.startswith(("CONFIG", "INFO"))}
    calls = {name: int(value["calls"]) for name, value in stats.items()}
    # Redis's own time in each command (a script's commands counted in it too), not the I/O.
    evalsha_usec = float(stats.get("EVALSHA", {}).get("usec", 0))
    total = sum(calls.values())
    how = "sequential" if args.concurrency == 1 else f"at concurrency {args.concurrency}"
    print(f"{args.requests} {how} seed completions in {seconds:.1f} s, Redis of its own:\n")
    print(f"commands per request: {total / args.requests:.1f}")
    if turns is not None:
        print(f"round trips per request: {turns / args.requests:.2f} (the gateway's, through a counting proxy)")
    print(
        f"Redis CPU per request: {(cpu_run - idle) / args.requests * 1e6:.0f} µs "
        f"({cpu_run / args.requests * 1e6:.0f} µs before subtracting {idle * 1e3:.0f} ms of idle cron)"
    )
    print(f"of which in scripts: {evalsha_usec / args.requests:.0f} µs (EVALSHA's own time, its commands included)")
    print("\n| command | per request | µs per call |\n|---|---:|---:|")
    for command_name, count in sorted(calls.items(), key=lambda item: -item[1]):
        per_call = float(stats[command_name]["usec_per_call"])
        print(f"| {command_name} | {count / args.requests:.2f} | {per_call:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
