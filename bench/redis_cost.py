"""What one completion costs Redis: ``python -m bench.redis_cost`` (needs Debian's redis-server).

Starts a Redis of its own (a free port, nothing saved to disk: the machine's Redis serves other
work whose commands would be counted too), the fake upstream, and the gateway as ``make serve``
runs it with ``REDIS_URL`` pointing at that Redis; sends ``--requests`` seed completions (one
after another over one keep-alive connection, or from ``--concurrency`` clients), then reads
Redis's ``INFO commandstats`` and ``INFO cpu`` (reset and read around the run) and prints the
commands and the Redis CPU time per request. The Redis CPU of an idle interval as long as the
run is subtracted (its own cron). The gateway reaches Redis through a small proxy here that
counts its round trips (``--direct``: without it).

A Redis that waits between requests pays for every wake-up, and on a small machine it shares
its cores with the gateway, so the figure above is the most a request costs it. Two more show
what one costs a Redis with a core to itself: ``--replay N`` sends N completions' worth of the
router's own calls from this process with the gateway idle (and then as many PINGs: the round
trips alone), and ``--saturate`` drives each phase (the snapshot's pipeline, the acquire and
finish scripts with the arguments the state sends) with redis-benchmark's 50 connections.
"""

import argparse
import asyncio
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmm.settings")
    import django

    django.setup()


def replay(*, port: int, floor: bool = False) -> Callable[[], None]:
    """The router's own calls to the routing state for one seed completion (``routed_call`` on
    one worker, the upstream call left out), against the Redis on ``port``, with no gateway.

    With ``floor``, each call of the state is a PING instead (the state kept in this process):
    what as many round trips cost Redis with nothing to do, at the same pace."""
    _django()
    from inference.router import routed_call
    from inference.routing import RoutingTable
    from inference.routing_state_local import LocalRoutingState
    from inference.routing_state_redis import RedisRoutingState
    from registry.models import Worker

    class PingingState(LocalRoutingState):
        pinged = redis.Redis(host="127.0.0.1", port=port)

        def __getattribute__(self, name: str):
            # budget_record_request was a fourth call before 2026-12-01: so a tree from before
            # can be measured with this benchmark copied in.
            if name in ("snapshot", "acquire", "finish", "budget_record_request"):
                type(self).pinged.ping()
            return super().__getattribute__(name)

    worker = Worker(id=1, model_name=SEED_BODY["model_name"], enabled=True, weight=1, timeout=30)
    table = RoutingTable(loader=lambda name: [worker] if name in (None, worker.model_name) else [])
    state = PingingState() if floor else RedisRoutingState(url=f"redis://127.0.0.1:{port}/1", prefix="bench-replay")

    def complete() -> None:
        routed_call(model_name=worker.model_name, call=lambda worker, lease: None, table=table, state=state)

    return complete


def saturate(*, port: int, client: redis.Redis) -> list[str]:
    """Each phase of a completion alone, driven by redis-benchmark (C, 50 connections) so Redis
    is busy: its CPU per completion when it never waits for work, the figure a Redis core's
    capacity follows from. Sequential runs cost Redis more per request (it wakes for each)."""
    _django()
    from inference.routing_state_redis import _ACQUIRE, _FINISH, _KEEP_SECONDS, _RENEW_SECONDS, _STATS_FIELDS
    from inference.traffic import FAILURE_LATENCY_MS, _minute

    binary = shutil.which("redis-benchmark")
    if binary is None:
        return ["\n(no redis-benchmark: the busy Redis is not measured)"]
    now = time.time()
    minute = _minute(now)
    worker, in_flight, other = "{bench:m}:w:1", "{bench:m}:if:1", "{bench:m}:w:2"
    # The arguments the state sends (routing_state_redis), a random token each call.
    acquire = ["EVALSHA", client.script_load(_ACQUIRE), "2", in_flight, worker, repr(now), "t__rand_int__"]
    acquire += [repr(now + 60), "0", "0", str(_KEEP_SECONDS), str(_RENEW_SECONDS)]
    finish = ["EVALSHA", client.script_load(_FINISH), "3", in_flight, worker, other, repr(now), "t__rand_int__"]
    finish += ["ok", "5.0", "", "10", "5", "30", "300", "1", str(FAILURE_LATENCY_MS), str(minute)]
    finish += [str(_KEEP_SECONDS), str(_RENEW_SECONDS), *_STATS_FIELDS[minute % 2]]
    phases = {
        # The snapshot is HINCRBY, HGETALL, ZCOUNT in one pipeline: measured as three HGETALLs a trip.
        "snapshot (3 commands, one trip)": (["HGETALL", worker], 3),
        "acquire (script)": (acquire, 1),
        "finish (script, a success)": (finish, 1),
    }
    lines = ["\nEach phase driven alone by redis-benchmark, 50 connections (Redis busy):"]
    total = 0.0
    for name, (command, pipeline) in phases.items():
        calls = 100_000 * pipeline
        cpu_before, began = redis_cpu(client), time.monotonic()
        options = ["-p", str(port), "-c", "50", "-n", str(calls), "-r", "100000000", "-P", str(pipeline), "-q"]
        subprocess.run(
            [binary, *options, *command],
            capture_output=True,
            timeout=300,
            check=True,
        )
        seconds, cpu = time.monotonic() - began, redis_cpu(client) - cpu_before
        per_trip = cpu / calls * pipeline
        total += per_trip
        lines.append(f"  {name}: {per_trip * 1e6:.1f} µs of Redis CPU a trip (Redis busy {cpu / seconds:.0%})")
    lines.append(f"  one completion: {total * 1e6:.1f} µs, so {1 / total:,.0f} completions a second per Redis core")
    return lines


def measure(client: redis.Redis, send: Callable[[int], None], requests: int) -> tuple[float, float, dict]:
    """(seconds, Redis CPU seconds, INFO commandstats) over ``send(requests)``."""
    client.config_resetstat()
    began, cpu_before = time.monotonic(), redis_cpu(client)
    send(requests)
    return time.monotonic() - began, redis_cpu(client) - cpu_before, client.info("commandstats")


@dataclass
class Run:
    requests: int
    seconds: float
    redis_cpu: float  # seconds, the idle cron's share taken off
    stats: dict  # INFO commandstats
    turns: int | None  # round trips, where counted

    def report(self) -> None:
        stats = {name.removeprefix("cmdstat_").upper(): value for name, value in self.stats.items()}
        stats = {name: value for name, value in stats.items() if not name.startswith(("CONFIG", "INFO"))}
        calls = {name: int(value["calls"]) for name, value in stats.items()}
        # Redis's own time in a script, its commands included (commandstats also counts each of
        # them on its own line): what is not in commands is reading and writing sockets.
        in_scripts = float(stats.get("EVALSHA", {}).get("usec", 0)) / self.requests
        print(f"  {self.requests / self.seconds:.0f} completions a second")
        print(f"  commands per request: {sum(calls.values()) / self.requests:.1f}")
        if self.turns is not None:
            print(f"  round trips per request: {self.turns / self.requests:.2f} (counted by a proxy)")
        print(
            f"  Redis CPU per request: {self.redis_cpu / self.requests * 1e6:.0f} µs, of which scripts {in_scripts:.0f} µs"
        )
        print("\n  | command | per request | µs per call |\n  |---|---:|---:|")
        for name, count in sorted(calls.items(), key=lambda item: -item[1]):
            print(f"  | {name} | {count / self.requests:.2f} | {float(stats[name]['usec_per_call']):.2f} |")


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
    parser.add_argument(
        "--replay",
        type=int,
        default=0,
        metavar="N",
        help="then N completions' worth of the router's own calls from this process, the gateway idle: "
        "the Redis CPU of the same work when Redis does not share its cores with a loaded gateway",
    )
    parser.add_argument(
        "--saturate", action="store_true", help="then each phase alone with redis-benchmark, Redis busy"
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
                turns_before = counter.turns if counter else 0
                seconds, cpu_run, stats = measure(client, send, args.requests)
                turns = counter.turns - turns_before if counter else None
                idle_before = redis_cpu(client)
                time.sleep(min(seconds, 10.0))
                idle_per_second = (redis_cpu(client) - idle_before) / min(seconds, 10.0)
                gateway = Run(args.requests, seconds, cpu_run - idle_per_second * seconds, stats, turns)
                replayed = []
                for floor in (False, True) if args.replay else ():
                    one = replay(port=port, floor=floor)
                    for _ in range(200):
                        one()
                    seconds, cpu_run, stats = measure(
                        client, lambda count, one=one: [one() for _ in range(count)], args.replay
                    )
                    replayed.append(Run(args.replay, seconds, cpu_run - idle_per_second * seconds, stats, None))
                busy = saturate(port=port, client=client) if args.saturate else []
        except (SetupError, subprocess.SubprocessError, redis.RedisError) as exc:
            print(f"setup failed: {exc}", file=sys.stderr)
            return 1
    how = "sequential" if args.concurrency == 1 else f"at concurrency {args.concurrency}"
    print(f"{args.requests} {how} seed completions through the gateway, Redis of its own:")
    gateway.report()
    if replayed:
        print(f"\nThe router's calls for {args.replay} completions from one process, no gateway running:")
        replayed[0].report()
        print("\nThe same with a PING for each of those calls (the state kept in the process): the round trips alone")
        replayed[1].report()
    print(f"\n(Redis's idle cron, {idle_per_second * 1e3:.1f} ms a second, is subtracted.)")
    print("\n".join(busy))
    return 0


if __name__ == "__main__":
    sys.exit(main())
