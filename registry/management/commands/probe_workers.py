"""manage.py probe_workers: check every enabled worker once (for cron), or keep checking."""

import json
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError

from inference.redaction import redact_url
from mmm.command_loop import KeptConnection, add_loop_arguments, stop_on_signals
from registry.health import workers_probe
from registry.models import HealthState, Worker
from registry.services import workers_remove_expired


class Command(BaseCommand):
    help = (
        "Probe every enabled worker (its health_url, or a short real request) in parallel, mark failing "
        "ones unhealthy and recovered ones healthy, print one line per change and a summary. Exits 0 when "
        "every probed worker is healthy, 1 otherwise."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", help="Probe only the workers of this model name.")
        add_loop_arguments(parser, keeps="probing", beside_gunicorn=False)
        parser.add_argument("--interval", type=float, default=30.0, help="Seconds between passes with --loop.")

    def handle(self, *args, model: str | None, loop: bool, interval: float, as_json: bool, **options) -> None:
        if interval <= 0:
            self.stderr.write("--interval must be above 0")
            raise SystemExit(2)
        stop = stop_on_signals() if loop else threading.Event()
        kept = KeptConnection()
        while True:
            if not loop:
                raise SystemExit(0 if self.run_pass(model=model, as_json=as_json) else 1)
            failed = False
            kept.before_pass()
            try:
                self.run_pass(model=model, as_json=as_json)
            except DatabaseError as exc:
                failed = True
                # The database is away: nothing can be read or recorded. The loop goes on and
                # the next pass probes again (the workers' health is what counts when it is back).
                self.stderr.write(f"probe pass skipped, the database is unavailable: {type(exc).__name__}")
            kept.after_pass(failed=failed)
            if stop.wait(interval):
                return

    def run_pass(self, *, model: str | None, as_json: bool) -> bool:
        started = time.monotonic()
        removed = workers_remove_expired(expired_for=settings.MMM_HEARTBEAT_REMOVE_AFTER)
        if removed and not as_json:
            for worker in removed:
                self.stdout.write(
                    f"{worker.model_name} worker {worker.pk} {redact_url(worker.req_url_template)}: removed, "
                    f"no heartbeat since {worker.heartbeat_expires_at:%Y-%m-%d %H:%M:%S} UTC"
                )
        # Workers whose heartbeats stopped are not routed; probing them would only add noise.
        workers = Worker.objects.probed()
        if model:
            workers = workers.filter(model_name=model)
        by_id = {worker.pk: worker for worker in workers}
        results, changes = [], []
        for result, change in workers_probe(workers=by_id.values()):
            worker = by_id[result.worker_id]
            results.append(
                {
                    "worker_id": worker.pk,
                    "model_name": worker.model_name,
                    "url": redact_url(worker.req_url_template),
                    "ok": result.ok,
                    "latency_ms": round(result.latency_ms, 1),
                    "error": result.error,
                    "state": change.new_state if change else None,
                }
            )
            if change:
                changes.append({"worker_id": worker.pk, "old_state": change.old_state, "new_state": change.new_state})
                if not as_json:
                    why = f" ({result.error})" if result.error else ""
                    self.stdout.write(
                        f"{worker.model_name} worker {worker.pk} {redact_url(worker.req_url_template)}: "
                        f"{change.old_state} -> {change.new_state}{why}"
                    )
        states = dict(Worker.objects.filter(pk__in=by_id).values_list("pk", "health_state"))
        for row in results:
            row["state"] = states.get(row["worker_id"], "removed")
        healthy = sum(1 for row in results if row["state"] == HealthState.HEALTHY)
        summary = {
            "probed": len(results),
            "healthy": healthy,
            "not_healthy": len(results) - healthy,
            "changed": len(changes),
            "removed_expired": len(removed),
            "seconds": round(time.monotonic() - started, 3),
        }
        if as_json:
            self.stdout.write(json.dumps({**summary, "changes": changes, "results": results}))
        else:
            self.stdout.write(
                f"probed {summary['probed']} worker(s): {healthy} healthy, {summary['not_healthy']} not healthy, "
                f"{summary['changed']} changed, in {summary['seconds']:.2f} s"
            )
        return healthy == len(results)
