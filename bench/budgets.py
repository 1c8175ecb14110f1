"""What budgets cost on the fast path: throughput with budgets on against off, same run.

    .venv/bin/python -m bench.budgets [--duration 8] [--rounds 2]

One gateway as `make serve` starts it (SQLite, REDIS_URL from the environment, default the
local Redis's db 15), a key with a token budget and a money budget and a price for the model,
loaded at concurrency 32 on the seed endpoint against a fast upstream. "on" reserves each request
in Redis (a script before the upstream call) and settles it behind the response (batched with the
other requests' settles, usage/settlement.py) and queues its ledger row; "off" (MMM_BUDGETS=
false) still writes the ledger row but touches no counter. Rounds alternate off and on so
the machine's load drifts into both alike; the ratio is of the summed throughputs. The gateway's
CPU time per request (master and workers, from /proc) is printed too: on a machine shared
with other work it is steadier than throughput.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from bench.compare import cpu_seconds
from bench.loadgen import Target, run_load
from bench.run import COMPLETIONS_PATH, ROOT, fake_upstream, gateway_env, migrate, register_models, running_gateway

TARGET_LOSS = 0.15


def manage(env: dict, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise SystemExit(f"manage.py {args[0]} failed:\n{done.stderr}")
    return done.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.budgets", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds of each run (8)")
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs (2)")
    args = parser.parse_args(argv)
    rates: dict[str, list[float]] = {"off": [], "on": []}
    p50: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}  # gateway CPU ms per request
    with tempfile.TemporaryDirectory(prefix="mmm-bench-budgets-") as tmp, fake_upstream() as upstream_port:
        env = {
            **gateway_env(Path(tmp)),
            "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"),
            "MMM_USAGE_PREFIX": f"mmm:bench-usage:{uuid.uuid4().hex[:8]}",
            "MMM_ROUTING_STATE_PREFIX": f"mmm:bench-rs:{uuid.uuid4().hex[:8]}",
            "MMM_CACHE_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
        }
        migrate(env)
        key = manage(
            env, "create_api_key", "--name", "bench", "--scope", "inference",
            "--budget-tokens", str(10**15), "--budget-usd", "1000000", "--budget-period", "month",
        ).strip().splitlines()[-1]  # fmt: skip
        manage(env, "shell", "-c", _PRICE)
        target = Target(
            port=0,
            path=COMPLETIONS_PATH,
            json_body={"input": "hello", "model_name": "bench-fast"},
            expect_success=True,
            headers=(("Authorization", f"Bearer {key}"),),
        )
        registered = False
        for round_number in range(args.rounds):
            # off-on, then on-off: whatever the second run of a pair gains or loses, both get it.
            for mode in ("off", "on") if round_number % 2 == 0 else ("on", "off"):
                mode_env = {**env, "MMM_BUDGETS": "true" if mode == "on" else "false"}
                with running_gateway(mode_env, Path(tmp) / f"gateway-{mode}-{round_number}.log") as gateway:
                    if not registered:
                        register_models(gateway.port, upstream_port)
                        registered = True
                    aimed = Target(**{**target.__dict__, "port": gateway.port})
                    run_load(aimed, concurrency=32, warmup=0.0, duration=1.0)  # warm every process
                    before = cpu_seconds(gateway.process.pid)
                    result = run_load(aimed, concurrency=32, warmup=0.0, duration=args.duration)
                    cpu[mode].append((cpu_seconds(gateway.process.pid) - before) * 1000 / max(len(result.latencies), 1))
                if result.error_count:
                    raise SystemExit(f"budgets {mode}: {result.error_count} errors {dict(result.errors)}")
                rates[mode].append(result.requests_per_second)
                p50[mode].append(result.percentile_ms(0.5))
                print(
                    f"  round {round_number + 1} budgets {mode}: {result.requests_per_second:.0f} req/s",
                    file=sys.stderr,
                )
        in_process = manage(env, "shell", "-c", _IN_PROCESS).strip().splitlines()[-1]
    off, on = sum(rates["off"]), sum(rates["on"])
    loss = 1 - on / off
    print(f"| fast path, c=32, {os.cpu_count()} CPUs | req/s | p50 ms | gateway CPU ms per request |")
    print("|---|---:|---:|---:|")
    for mode in ("off", "on"):
        print(
            f"| budgets {mode} | {sum(rates[mode]) / len(rates[mode]):.0f} | {sum(p50[mode]) / len(p50[mode]):.1f} | "
            f"{sum(cpu[mode]) / len(cpu[mode]):.2f} |"
        )
    verdict = "meets" if loss < TARGET_LOSS else "MISSES"
    print(f"\nbudgets on / off throughput: {on / off:.3f} ({loss:+.1%} loss; {verdict} the < {TARGET_LOSS:.0%} target)")
    cpu_ratio = (sum(cpu["on"]) / len(cpu["on"])) / (sum(cpu["off"]) / len(cpu["off"]))
    print(f"budgets on / off gateway CPU per request: {cpu_ratio:.3f}")
    print(f"in process, reserve + settle per request: {in_process}")
    return 0


_PRICE = (
    "from django.utils import timezone; from datetime import timedelta; from usage.models import Price; "
    "Price.objects.create(model_name='bench-fast', effective_from=timezone.now() - timedelta(days=1), "
    "input_per_million=1, output_per_million=2)"
)

# The hooks alone, in one process, without HTTP: what a request with budgets spends in
# usage_reserve + usage_settle (two Redis scripts: settled in the caller here), against a key without any.
_IN_PROCESS = """
import time
from accounts.models import ApiKey
from usage.ledger import ledger_writer
from usage.services import usage_reserve, usage_settle
from usage.metering import Tokens
body = {"input": "hello", "model_name": "bench-fast"}
def per_request(key_id, n=2000):
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        held = usage_reserve(api_key_id=key_id, model_name="bench-fast", body=body)
        usage_settle(reservation=held, tokens=Tokens(input=2, output=5), status=200)
    ledger_writer.discard()
    return f"{(time.perf_counter() - wall) / n * 1e6:.0f} us ({(time.process_time() - cpu) / n * 1e6:.0f} us CPU)"
key = ApiKey.objects.get(name="bench").pk
per_request(key, 200)
print(f"{per_request(key)} with budgets, {per_request(None)} without")
"""

if __name__ == "__main__":
    sys.exit(main())
