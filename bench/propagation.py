"""How fast a change made through one gateway host is in effect on another.

``python -m bench.propagation`` (the last step of ``make bench``) starts two gateways as
``make serve`` runs them, each its own gunicorn with its own workers, sharing one database
as two hosts would. For each trial it registers a worker through host A, asks host B for a
completion at once, then takes the worker offline through A and polls B until every one of
B's processes answers 404. The issue's target: in effect everywhere within 2 seconds.

B's answers do not say which of its processes gave them, so after the offline it polls B
for a fixed window (each call on a new connection, which the kernel hands to any of B's
processes) and reports when the last stale answer (a 200) came: over a few hundred calls
every process is asked many times.
"""

import argparse
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench.run import MODELS, call_json, fake_upstream, gateway_env, migrate, running_gateway

# Three refresh intervals: long enough to see the change land on every process of B.
WATCH_SECONDS = 3.0
POLL_SECONDS = 0.005


def one_trial(host_a: int, host_b: int, upstream: int, trial: int) -> tuple[bool, float]:
    """(B answered at once after the registration, seconds from the offline to B's last stale answer)."""
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
    last_stale = 0.0
    while (now := time.perf_counter()) - offline_at < WATCH_SECONDS:
        status = call_json(host_b, "POST", "/api/v1/chat/completions", ask)[0]
        if status == 200:
            last_stale = now - offline_at
        elif status != 404:
            raise SystemExit(f"unexpected HTTP {status} from host B")
        time.sleep(POLL_SECONDS)
    return answered_at_once, last_stale


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
        f"offline through host A: last stale answer from host B after median {statistics.median(delays_ms):.0f} ms, "
        f"max {max(delays_ms):.0f} ms over {args.trials} trials (target <= 2000 ms)"
    )


if __name__ == "__main__":
    main()
