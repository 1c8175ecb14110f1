"""What the gateway costs while nobody calls it: ``python -m bench.idle_cost``.

Starts the gateway as ``make serve`` runs it (bench.compare's setup: gunicorn's master and two
workers, the host-state server, the job runner, the webhook sender, the engine scraper), lets it
settle for ``--settle`` seconds, then, over ``--duration`` seconds of no traffic, reads each
process's CPU time and its threads' voluntary context switches (each one a sleep it woke from)
from /proc, and prints both per second, by role.

Why it matters beyond the idle CPU: at c=1 every wake-up of a process beside the request's own
is a chance to take the core the request's next hop was about to run on. With the job runner,
webhook sender and engine scraper turned off, the fake upstream's own p99 at c=1 fell from
9-12x its p50 to 2.3-3x, and the gateway's from 2.9-4.2x to 2.4-2.7x (bench.tail_split,
docs/benchmark.md, "The eleventh pass").
"""

import argparse
import os
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path

from bench.compare import _ROLES, CHAT_PATH, CLOCK_TICKS, SEED_PATH, STREAM_CHUNKS, STREAM_SECONDS, mmm, process_tree
from bench.run import SetupError, positive, upstream_process


def sample(pids: list[int]) -> dict[int, tuple[str, float, int]]:
    """Per live process: (its role, CPU seconds so far, voluntary context switches of its threads)."""
    found = {}
    for pid in pids:
        with suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            role = next((name for name, needle in _ROLES if needle in cmdline), "other")
            switches = 0
            for task in os.listdir(f"/proc/{pid}/task"):
                status = Path(f"/proc/{pid}/task/{task}/status").read_text()
                switches += int(status.split("\nvoluntary_ctxt_switches:")[1].split()[0])
            found[pid] = (role, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS, switches)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=positive(float), default=20.0, help="seconds measured (20)")
    parser.add_argument("--settle", type=positive(float), default=5.0, help="seconds after start-up first (5)")
    parser.add_argument("--mmm-env", action="append", default=[], metavar="NAME=VALUE", help="gateway environment")
    args = parser.parse_args(argv)
    try:
        extra_env = dict(pair.split("=", 1) for pair in args.mmm_env)
    except ValueError:
        parser.error("--mmm-env takes NAME=VALUE")
    chats = [f"--chat={CHAT_PATH}={STREAM_CHUNKS}:{STREAM_SECONDS}", f"{SEED_PATH}=0"]
    try:
        with (
            tempfile.TemporaryDirectory(prefix="mmm-idle-") as name,
            upstream_process("bench.upstream", fd_flag="--fd", args=chats) as upstream,
            mmm(upstream, Path(name), extra_env) as (seed, _v1),
        ):
            time.sleep(args.settle)
            pids = process_tree(seed.pid)
            before = sample(pids)
            began = time.monotonic()
            time.sleep(args.duration)
            after = sample(pids)
            seconds = time.monotonic() - began
    except SetupError as exc:
        print(f"could not start: {exc}", file=sys.stderr)
        return 1
    by_role: dict[str, list[float]] = {}
    for pid, (role, cpu, switches) in after.items():
        if pid not in before:
            continue
        totals = by_role.setdefault(role, [0, 0.0, 0.0])
        totals[0] += 1
        totals[1] += (cpu - before[pid][1]) * 1000 / seconds
        totals[2] += (switches - before[pid][2]) / seconds
    print(f"the gateway idle for {seconds:.1f} s, per second (CPU time counts in {1000 / CLOCK_TICKS:g} ms ticks):\n")
    print("| process | count | CPU ms/s | wake-ups/s |\n|---|---:|---:|---:|")
    for role, (count, cpu, wakes) in sorted(by_role.items()):
        print(f"| {role} | {count} | {cpu:.1f} | {wakes:.1f} |")
    cpu_total = sum(value[1] for value in by_role.values())
    wakes_total = sum(value[2] for value in by_role.values())
    print(f"| all | {sum(int(value[0]) for value in by_role.values())} | {cpu_total:.1f} | {wakes_total:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
