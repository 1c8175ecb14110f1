"""Webhooks benchmark: N events enqueued at once for one endpoint on a loopback receiver, sent
by S ``manage.py deliver_webhooks --loop`` processes sharing the outbox.

    .venv/bin/python -m bench.webhooks                          # 2,000 events, 1 and 2 senders
    .venv/bin/python -m bench.webhooks --events 500 --senders 1,2,4
    DATABASE_URL=postgres://... .venv/bin/python -m bench.webhooks   # on PostgreSQL

Prints per sender count: deliveries per second until every event was received, events posted
more than once (must be 0) and never received (must be 0), the time from enqueue to the
receiver's read (p50, p99), and the senders' CPU time per delivery.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--senders", default="1,2", help="comma-separated sender counts to run in turn")
    args = parser.parse_args(argv)
    print(
        f"{'senders':>7} {'events':>6} {'per s':>7} {'twice':>5} {'lost':>4} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms/each':>11}"
    )
    for senders in (int(count) for count in args.senders.split(",")):
        with tempfile.TemporaryDirectory() as var:
            print(run(events=args.events, senders=senders, var=Path(var)), flush=True)
    return 0


def run(*, events: int, senders: int, var: Path) -> str:
    base = os.environ.get("DATABASE_URL", "")
    database = f"sqlite:///{var / 'bench.sqlite3'}"
    if base.startswith("postgres"):
        database = _fresh_postgres(base)
    env = {**os.environ, "DATABASE_URL": database, "MMM_VAR_DIR": str(var), "MMM_LOG_LEVEL": "WARNING"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    receiver = _receiver()
    processes = [
        subprocess.Popen(
            [sys.executable, "manage.py", "deliver_webhooks", "--loop", "--interval", "0.05", "--json"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(senders)
    ]
    for process in processes:
        process.stdout.readline()  # its first pass is done: it is up and polling the outbox
    enqueued_at = _enqueue(env=env, events=events, url=receiver.url("/hook"))
    started = enqueued_at
    deadline = started + max(120.0, events * 0.1)
    try:
        while len({seen.headers["webhook-id"] for seen in receiver.seen}) < events and time.monotonic() < deadline:
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        cpu = sum(_cpu_seconds(process.pid) for process in processes)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.communicate(timeout=30)
        receiver.stop()
        if base.startswith("postgres"):
            _drop_postgres(base, database)
    ids = [seen.headers["webhook-id"] for seen in receiver.seen]
    received = {seen.headers["webhook-id"]: seen.received_at for seen in receiver.seen if hasattr(seen, "received_at")}
    latencies = sorted((received[event_id] - enqueued_at) * 1000 for event_id in received)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else float("nan")
    return (
        f"{senders:>7} {events:>6} {len(received) / elapsed:>7.0f} {len(ids) - len(set(ids)):>5} "
        f"{events - len(received):>4} {statistics.median(latencies) if latencies else float('nan'):>7.0f} "
        f"{p99:>7.0f} {cpu * 1000 / max(1, len(received)):>11.2f}"
    )


def _receiver():
    from tests.fake_upstream import FakeUpstream, Reply

    receiver = FakeUpstream().start()

    def answer(seen):
        seen.received_at = time.monotonic()
        return Reply(status=204, text="")

    receiver.on("/hook", answer)
    return receiver


def _enqueue(*, env: dict[str, str], events: int, url: str) -> float:
    """``events`` events for one endpoint at ``url``, enqueued in one transaction (in a child
    process, on the benchmark's database); returns when they were committed."""
    code = (
        "from django.db import transaction; from accounts.services import api_key_create; "
        "from webhooks.services import enqueue_event, webhook_endpoint_create\n"
        "key = api_key_create(name='bench', scopes=['inference'])[0]\n"
        f"webhook_endpoint_create(api_key=key, url={url!r})\n"
        "with transaction.atomic():\n"
        f"    for n in range({events}):\n"
        "        enqueue_event(api_key_id=key.pk, event_type='video.completed', data={'id': n}, "
        "idempotency_key=f'e{n}')\n"
        "print('committed', flush=True)\n"
        "import sys; sys.stdin.read()\n"  # held until the parent has noted the time
    )
    child = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    while "committed" not in child.stdout.readline():
        if child.poll() is not None:
            raise RuntimeError("enqueueing the events failed")
    committed = time.monotonic()
    child.communicate("", timeout=30)
    return committed


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _fresh_postgres(base: str) -> str:
    import psycopg2

    name = f"mmm_bench_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(base)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return base.rsplit("/", 1)[0] + "/" + name


def _drop_postgres(base: str, database: str) -> None:
    import psycopg2

    admin = psycopg2.connect(base)
    admin.autocommit = True
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{database.rsplit("/", 1)[1]}" WITH (FORCE)')
    admin.close()


if __name__ == "__main__":
    sys.exit(main())
