"""How much slower this machine runs Python right after an idle pause: ``python -m bench.idle_wake``.

The same CPU-bound piece of work (JSON of a small chat body in and out, a sort), timed back to
back and right after a sleep of each ``--gaps`` length, alternating, median of ``--calls`` each.
At c=1 a gateway waits on the network between its phases and, for a stream, idles 50 ms between
requests; on a virtual machine whose vCPU then halts, its next request runs as the "after a
pause" figure says, not as the back-to-back one: a part of every c=1 latency figure that comes
from the machine, not from the gateway (docs/benchmark.md, "The tenth pass").
"""

import argparse
import json
import statistics
import time

# A longer pause measures nothing new, and an infinite one would never end.
MOST_GAP_SECONDS = 10.0

_BODY = {"model": "bench", "messages": [{"role": "user", "content": "hi " * 20}] * 3, "stream": False}


def _work() -> None:
    for _ in range(20):
        json.loads(json.dumps(_BODY))
        sorted(range(200), key=lambda x: -x)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _gap_list(text: str) -> list[float]:
    try:
        gaps = [float(value) for value in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of seconds: {text!r}") from None
    if not all(0 <= gap <= MOST_GAP_SECONDS for gap in gaps):  # NaN fails this too
        raise argparse.ArgumentTypeError(f"seconds must be from 0 to {MOST_GAP_SECONDS:g}: {text!r}")
    return gaps


def median_seconds(*, gap: float, calls: int) -> float:
    taken = []
    for _ in range(calls):
        if gap:
            time.sleep(gap)
        began = time.perf_counter()
        _work()
        taken.append(time.perf_counter() - began)
    return statistics.median(taken)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_wake", description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=_positive_int, default=200, help="timed calls per gap and round (200)")
    parser.add_argument("--rounds", type=_positive_int, default=3, help="rounds over all the gaps (3)")
    parser.add_argument(
        "--gaps",
        type=_gap_list,
        default="0,0.0005,0.005,0.05",
        help="seconds of sleep before each call, 0 for back to back; the first is the baseline",
    )
    args = parser.parse_args(argv)
    gaps = list(dict.fromkeys(args.gaps))  # a gap given twice is measured once
    results: dict[float, list[float]] = {gap: [] for gap in gaps}
    for _ in range(args.rounds):
        for gap in gaps:
            results[gap].append(median_seconds(gap=gap, calls=args.calls))
    back_to_back = statistics.median(results[gaps[0]])
    print(f"the same work, µs, median of {args.calls} calls, each round's and their median:")
    for gap, values in results.items():
        label = "back to back" if gap == 0 else f"after {gap * 1000:g} ms idle"
        rounds = ", ".join(f"{value * 1e6:.0f}" for value in values)
        middle = statistics.median(values)
        print(f"  {label:>22}: {middle * 1e6:6.0f}  ({rounds})  {middle / back_to_back:.2f}x the first gap's")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
