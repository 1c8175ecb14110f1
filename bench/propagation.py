"""How fast a change made through one gateway host is in effect on another.

``python -m bench.propagation`` (the last step of ``make bench``) starts two gateways as
``make serve`` runs them, each its own gunicorn with its own workers, sharing one database
as two hosts would. For each trial it registers a worker through host A, asks host B for a
completion at once, then takes the worker offline through A and polls B until every one of
B's processes answers 404. The issue's target: in effect everywhere within 2 seconds.
"""

import argparse
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench.run import MODELS, call_json, fake_upstream, gateway_env, migrate, running_gateway

# Consecutive 404s from B that show no process of B still routes the worker: each call opens
# a new connection, and the kernel hands it to either of B's workers.
CONSISTENT_ANSWERS = 12
POLL_SECONDS = 0.01
GIVE_UP_SECONDS = 10.0


def one_trial(host_a: int, host_b: int, upstream: int, trial: int) -> tuple[bool, float]:
    """(B answered at once after the registration, seconds until the offline held on B)."""
    worker = {
        "model_name": f"propagation-{trial}",
        "req_url_template": f"http://127.0.0.1:{upstream}{MODELS['bench-fast']}",
        "body": {"input": "{USER_PROMPT}"},
        "response_extract": "data.items[].attributes.answer",
    }
    ask = {"input": "hello", "model_name": worker["model_name"]}
    call_json(host_a, "POST", "/api/server/register", worker)
    answered_at_once = call_json(host_b, "POST", "/api/v1/chat/completions", ask)[0] == 200

    key = {name: worker[name] for name in ("model_name", "req_url_template")}
    call_json(host_a, "POST", "/api/server/offline", key)
    offline_at = time.perf_counter()
    streak_began, streak = None, 0
    while time.perf_counter() - offline_at < GIVE_UP_SECONDS:
        status = call_json(host_b, "POST", "/api/v1/chat/completions", ask)[0]
        if status == 404:
            streak_began = streak_began or time.perf_counter()
            streak += 1
            if streak == CONSISTENT_ANSWERS:
                return answered_at_once, streak_began - offline_at
        else:
            streak_began, streak = None, 0
        time.sleep(POLL_SECONDS)
    return answered_at_once, float("inf")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.propagation", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mmm-propagation-") as tmp, ExitStack() as stack:
        env = gateway_env(Path(tmp))
        migrate(env)
        upstream = stack.enter_context(fake_upstream())
        host_a = stack.enter_context(running_gateway(env, Path(tmp) / "a.log")).port
        host_b = stack.enter_context(running_gateway(env, Path(tmp) / "b.log")).port
        trials = [one_trial(host_a, host_b, upstream, trial) for trial in range(args.trials)]

    at_once = sum(answered for answered, _ in trials)
    delays_ms = [seconds * 1000 for _, seconds in trials]
    print(f"registration through host A callable on host B at once: {at_once}/{args.trials} trials")
    print(
        f"offline through host A in effect on every process of host B after: median {statistics.median(delays_ms):.0f} ms, "
        f"max {max(delays_ms):.0f} ms over {args.trials} trials (target <= 2000 ms)"
    )


if __name__ == "__main__":
    main()
