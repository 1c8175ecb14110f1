"""How long the dashboard takes on a big request log: ``python -m bench.dashboard``.

Fills a fresh database (a SQLite file in a temporary directory, or the PostgreSQL database
named by --database-url, which it empties first) with --rows request-log rows spread over the
last day (the worst case for the day view: every row is in its window), plus a probe a minute
per worker, then renders /admin/dashboard/ for the hour and the day several times and prints
the median and slowest render.
"""

import argparse
import os
import random
import statistics
import sys
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=6)
    parser.add_argument("--workers-per-model", type=int, default=2)
    parser.add_argument("--renders", type=int, default=5)
    parser.add_argument("--database-url", help="postgres://... (emptied first); default: a new SQLite file")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="mmm-bench-dashboard-")
    os.environ["MMM_VAR_DIR"] = workdir
    os.environ["DATABASE_URL"] = args.database_url or f"sqlite:///{workdir}/bench.sqlite3"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmm.settings")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.ALLOWED_HOSTS = ["testserver"]
    call_command("flush", "--noinput", verbosity=0) if args.database_url else None
    call_command("migrate", "--noinput", verbosity=0)

    started = time.monotonic()
    workers = fill(rows=args.rows, models=args.models, workers_per_model=args.workers_per_model)
    print(
        f"inserted {args.rows} request-log rows for {args.models} models and {workers} workers "
        f"in {time.monotonic() - started:.1f} s ({settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[1]})"
    )

    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench-password")
    client = Client()
    client.force_login(user)
    for window in ("hour", "day"):
        seconds = []
        for _ in range(args.renders):
            begun = time.monotonic()
            response = client.get("/admin/dashboard/", {"window": window})
            seconds.append(time.monotonic() - begun)
            if response.status_code != 200:
                sys.exit(f"dashboard answered {response.status_code}")
        print(
            f"dashboard, {window:>4}: median {statistics.median(seconds) * 1000:.0f} ms, "
            f"slowest {max(seconds) * 1000:.0f} ms over {args.renders} renders"
        )


def fill(*, rows: int, models: int, workers_per_model: int) -> int:
    """Insert the rows with executemany: bulk_create would spend minutes building objects."""
    from django.db import connection, transaction
    from django.utils import timezone

    from console.models import ProbeRecord, RequestLog, latency_class
    from registry.models import Worker

    rng = random.Random(1)
    workers = []
    for model in range(models):
        for index in range(workers_per_model):
            workers.append(
                Worker.objects.create(
                    model_name=f"model-{model}",
                    req_url_template=f"http://127.0.0.1:9/{model}/{index}",
                    body={"p": "{USER_PROMPT}"},
                )
            )
    now = timezone.now()
    day_seconds = 24 * 3600
    table = RequestLog._meta.db_table
    columns = (
        "created_at",
        "minute",
        "request_id",
        "model_name",
        "worker_id",
        "worker_url",
        "client_key_prefix",
        "status",
        "error_code",
        "error",
        "latency_ms",
        "latency_class",
        "upstream_ms",
        "attempts",
        "stream",
        "prompt",
        "answer",
    )
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
    batch = []
    with transaction.atomic(), connection.cursor() as cursor:
        for _ in range(rows):
            worker = rng.choice(workers)
            at = now - timezone.timedelta(seconds=rng.random() * day_seconds)
            latency = rng.lognormvariate(6, 0.8)
            failed = rng.random() < 0.03
            batch.append(
                (
                    at,
                    int(at.timestamp() // 60),
                    "",
                    worker.model_name,
                    worker.pk,
                    worker.req_url_template,
                    "",
                    502 if failed else 200,
                    "upstream_error" if failed else "",
                    "HTTP 500" if failed else "",
                    latency,
                    latency_class(latency),
                    latency * 0.95,
                    1,
                    False,
                    "",
                    "",
                )
            )
            if len(batch) == 10_000:
                cursor.executemany(sql, batch)
                batch.clear()
        if batch:
            cursor.executemany(sql, batch)
    probes = []
    for worker in workers:
        for minute in range(24 * 60):
            at = now - timezone.timedelta(minutes=minute)
            ok = rng.random() > 0.02
            probes.append(
                ProbeRecord(
                    worker=worker,
                    checked_at=at,
                    minute=int(at.timestamp() // 60),
                    ok=ok,
                    latency_ms=5,
                    error="" if ok else "connection refused",
                )
            )
    ProbeRecord.objects.bulk_create(probes, batch_size=5000)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM ANALYZE {table}")  # what autovacuum would have done by now
    else:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return len(workers)


if __name__ == "__main__":
    main()
