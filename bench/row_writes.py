"""CPU per request-log row, built and written: ``python -m bench.row_writes [--rows N]``.

Builds ``--rows`` request-log rows as a completion does and writes them in the writer's batches
(MMM_REQUEST_LOG_BATCH, one transaction each) to a fresh SQLite database in a temporary
directory, two ways: ``RequestLog(**values)`` and ``bulk_create`` (what the writers did before),
and ``mmm.bulk_rows`` (what they do now). Prints this process's CPU time per row for building and
for writing, the median of ``--rounds`` interleaved rounds.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.row_writes", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mmm-rows-") as tmp:
        os.environ["DATABASE_URL"] = f"sqlite:///{Path(tmp) / 'rows.sqlite3'}"
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmm.settings")
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import transaction
        from django.utils import timezone

        from console.models import RequestLog
        from mmm import bulk_rows

        call_command("migrate", verbosity=0)
        values = {
            "created_at": timezone.now(),
            "minute": 29_000_000,
            "request_id": "0f3c2a9e5b7d4c1e8a6f2b3d4c5e6f70",
            "model_name": "bench-fast",
            "worker_id": 1,
            "worker_url": "http://127.0.0.1:9000/generate",
            "status": 200,
            "latency_ms": 3.2,
            "latency_class": 1,
            "upstream_ms": 1.1,
            "attempts": 1,
        }
        batch = settings.MMM_REQUEST_LOG_BATCH

        def orm() -> tuple[float, float]:
            began = time.process_time()
            rows = [RequestLog(**values) for _ in range(args.rows)]
            built = time.process_time()
            for start in range(0, len(rows), batch):
                with transaction.atomic():
                    RequestLog.objects.bulk_create(rows[start : start + batch])
            return built - began, time.process_time() - built

        def lean() -> tuple[float, float]:
            began = time.process_time()
            rows = [bulk_rows.unsaved(RequestLog, **values) for _ in range(args.rows)]
            built = time.process_time()
            for start in range(0, len(rows), batch):
                with transaction.atomic():
                    bulk_rows.insert(RequestLog, rows[start : start + batch], ignore_conflicts=False, using="default")
            return built - began, time.process_time() - built

        results: dict[str, list[tuple[float, float]]] = {"Model() + bulk_create": [], "mmm.bulk_rows": []}
        for _ in range(args.rounds):
            results["Model() + bulk_create"].append(orm())
            results["mmm.bulk_rows"].append(lean())
        print(f"{args.rows} request-log rows to SQLite in batches of {batch}, median of {args.rounds} rounds:")
        for name, times in results.items():
            build = statistics.median(t[0] for t in times) * 1e6 / args.rows
            write = statistics.median(t[1] for t in times) * 1e6 / args.rows
            print(f"  {name:24} build {build:6.1f} µs/row   write {write:6.1f} µs/row   total {build + write:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
