"""Where the c=1 tail goes: ``python -m bench.tail_split``.

``bench.compare`` gives the p99 at c=1 as the client sees it. This splits it with the gateway's
own clock: the gateway (as ``make serve`` runs it, bench.compare's setup) serves wrk at c=1 on one
endpoint for ``--duration`` seconds, and each request's row in the request log says how long the
request was in the gateway (``latency_ms``: from the view's start until the answer's last byte
was handed to the socket) and how long of that the answering upstream call took
(``upstream_ms``: from sending the request until its whole answer was read). Per round it prints
the p50 and p99 of each part: what wrk saw, the time in the gateway, the upstream leg, and the
gateway's own work (the time in the gateway less the upstream leg); then, of the requests whose
time in the gateway passed ``--slow`` times its p50, how many there were and which part held
their excess over the p50: the upstream leg or the gateway's own work.

The upstream leg is the gateway's send, the fake upstream's wake-up and answer, and the
gateway's wake-up and read; the fake upstream alone, called back to back by wrk, is the
"direct" figure printed first. What wrk saw beyond the time in the gateway (gunicorn's read and
parse of the request, Django's work before the view, the client's own wake-up) has no per-request
figure here: only its p50 difference is printed.
"""

import argparse
import math
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.compare import (
    CHAT_BODY,
    CHAT_PATH,
    SEED_BODY,
    SEED_PATH,
    STREAM_CHUNKS,
    STREAM_SECONDS,
    Call,
    ensure_debian_package,
    mmm,
    wrk,
)
from bench.run import SetupError, positive, upstream_process

ENDPOINTS = {
    "seed": (Call("/api/v1/chat/completions", SEED_BODY), Call(SEED_PATH, SEED_BODY)),
    "v1": (Call(CHAT_PATH, CHAT_BODY), Call(CHAT_PATH, CHAT_BODY)),
}
# The request log's writer flushes every second (MMM_REQUEST_LOG_FLUSH_SECONDS); a round's rows
# are all in well within this, or the round says how many were missing.
ROWS_DEADLINE_SECONDS = 15.0


def quantile(values: list[float], fraction: float) -> float:
    """The value at ``fraction`` of the sorted values (nearest rank, as wrk's); NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


@dataclass(frozen=True)
class Split:
    requests: int
    gateway: tuple[float, float]  # p50, p99 of the time in the gateway (ms)
    upstream: tuple[float, float]
    own: tuple[float, float]
    slow: int  # requests whose time in the gateway passed the slow factor times its p50
    slow_in_upstream: int  # of those, the ones whose excess was mostly in the upstream leg
    excess_upstream_share: float  # of the slow requests' summed excess, the upstream leg's part


def split(rows: list[tuple[float, float]], *, slow_factor: float) -> Split:
    """The split of (latency_ms, upstream_ms) rows; rows without an upstream time are left out."""
    rows = [(total, upstream) for total, upstream in rows if upstream is not None]
    totals = [total for total, _ in rows]
    upstreams = [upstream for _, upstream in rows]
    owns = [total - upstream for total, upstream in rows]
    total_p50, upstream_p50, own_p50 = quantile(totals, 0.5), quantile(upstreams, 0.5), quantile(owns, 0.5)
    slow = [(total, upstream) for total, upstream in rows if total > slow_factor * total_p50]
    in_upstream = 0
    upstream_excess = own_excess = 0.0
    for total, upstream in slow:
        by_upstream = max(upstream - upstream_p50, 0.0)
        by_own = max(total - upstream - own_p50, 0.0)
        upstream_excess += by_upstream
        own_excess += by_own
        in_upstream += by_upstream > by_own
    summed = upstream_excess + own_excess
    return Split(
        requests=len(rows),
        gateway=(total_p50, quantile(totals, 0.99)),
        upstream=(upstream_p50, quantile(upstreams, 0.99)),
        own=(own_p50, quantile(owns, 0.99)),
        slow=len(slow),
        slow_in_upstream=in_upstream,
        excess_upstream_share=upstream_excess / summed if summed else math.nan,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.tail_split", description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", choices=sorted(ENDPOINTS), default="seed", help="which endpoint (seed)")
    parser.add_argument("--duration", type=positive(int), default=8, help="seconds of each wrk run (8)")
    parser.add_argument("--rounds", type=positive(int), default=3, help="rounds (3)")
    parser.add_argument("--slow", type=positive(float), default=3.0, help="a slow request's factor over the p50 (3)")
    parser.add_argument("--mmm-env", action="append", default=[], metavar="NAME=VALUE", help="gateway environment")
    args = parser.parse_args(argv)
    try:
        args.mmm_env = dict(pair.split("=", 1) for pair in args.mmm_env)
    except ValueError:
        parser.error("--mmm-env takes NAME=VALUE")
    return args


def _last_id(database: Path) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        return db.execute("SELECT COALESCE(MAX(id), 0) FROM console_requestlog").fetchone()[0]


def _rows_after(database: Path, mark: int, expected: int) -> list[tuple[float, float]]:
    """The rows written after ``mark``, once ``expected`` of them are in (or the deadline passed)."""
    deadline = time.monotonic() + ROWS_DEADLINE_SECONDS
    while True:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            rows = db.execute(
                "SELECT latency_ms, upstream_ms FROM console_requestlog WHERE id > ? AND status = 200", (mark,)
            ).fetchall()
        if len(rows) >= expected or time.monotonic() > deadline:
            if len(rows) < expected:
                print(f"  only {len(rows)} of {expected} rows were written within {ROWS_DEADLINE_SECONDS:g} s")
            return rows
        time.sleep(0.25)


def _pair(values: tuple[float, float]) -> str:
    p50, p99 = values
    return f"p50 {p50:6.3f}  p99 {p99:6.3f}  ({p99 / p50:.2f}x)"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    binary = ensure_debian_package("wrk", "wrk")
    if binary is None:
        print("wrk is not installed and apt-get could not install it", file=sys.stderr)
        return 1
    through, direct = ENDPOINTS[args.endpoint]
    chats = [f"--chat={CHAT_PATH}={STREAM_CHUNKS}:{STREAM_SECONDS}", f"{SEED_PATH}=0"]
    try:
        with (
            tempfile.TemporaryDirectory(prefix="mmm-tail-") as name,
            upstream_process("bench.upstream", fd_flag="--fd", args=chats) as upstream,
        ):
            tmp = Path(name)
            with mmm(upstream, tmp, args.mmm_env) as (seed, v1):
                gateway = seed if args.endpoint == "seed" else v1
                database = tmp / "bench.sqlite3"
                wrk(binary, gateway.port, through, connections=1, seconds=2, tmp=tmp)  # warm
                print(f"{args.endpoint} at c=1, {args.duration} s a round; times in ms\n")
                for round_ in range(1, args.rounds + 1):
                    alone = wrk(binary, upstream, direct, connections=1, seconds=args.duration, tmp=tmp)
                    mark = _last_id(database)
                    seen = wrk(binary, gateway.port, through, connections=1, seconds=args.duration, tmp=tmp)
                    parts = split(_rows_after(database, mark, seen.requests), slow_factor=args.slow)
                    print(f"round {round_}: {seen.requests} requests, {seen.errors} errors")
                    print(f"  the upstream alone (wrk)   {_pair((alone.p50_ms, alone.p99_ms))}")
                    print(f"  wrk through the gateway    {_pair((seen.p50_ms, seen.p99_ms))}")
                    print(
                        f"  time in the gateway        {_pair(parts.gateway)}  (wrk's p50 less this p50: "
                        f"{seen.p50_ms - parts.gateway[0]:.3f})"
                    )
                    print(f"  the upstream leg           {_pair(parts.upstream)}")
                    print(f"  the gateway's own work     {_pair(parts.own)}")
                    print(
                        f"  slower than {args.slow:g}x the p50 in the gateway: {parts.slow} of {parts.requests}"
                        f" ({parts.slow / max(parts.requests, 1):.2%}); mostly in the upstream leg: "
                        f"{parts.slow_in_upstream}; the upstream leg's share of their excess: "
                        f"{parts.excess_upstream_share:.0%}\n"
                    )
    except SetupError as exc:
        print(f"could not start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
