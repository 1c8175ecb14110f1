"""manage.py scrape_engines: read every named engine's /metrics once, or keep reading."""

import json
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError

from inference.routing_state import routing_state
from mmm.command_loop import KeptConnection, add_loop_arguments, parent_gone, stop_on_signals
from registry.engine_scrape import EngineFleet, engines_scrape


class Command(BaseCommand):
    help = (
        "Read the Prometheus /metrics of every worker that names its engine (vllm, sglang, tgi) and store its "
        "queue, running requests, KV-cache use and loaded adapters in the shared routing state, for the "
        "engine_aware and prefix_aware strategies. With --loop, keep reading every --interval seconds "
        "(MMM_ENGINE_SCRAPE_INTERVAL, 0.25) until SIGTERM, printing a line when a worker's scrape starts or "
        "stops failing; several scrapers may run at once (each engine is read by one of them)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", help="Read only the engines of this model name's workers.")
        add_loop_arguments(parser, keeps="reading")
        parser.add_argument(
            "--interval",
            type=float,
            default=None,
            help="Seconds between passes with --loop (default MMM_ENGINE_SCRAPE_INTERVAL).",
        )

    def handle(
        self,
        *args,
        model: str | None,
        loop: bool,
        interval: float | None,
        as_json: bool,
        parent_pid: int | None,
        **options,
    ) -> None:
        interval = settings.MMM_ENGINE_SCRAPE_INTERVAL if interval is None else interval
        if interval <= 0:
            self.stderr.write("--interval must be above 0")
            raise SystemExit(2)
        if not loop:
            results = engines_scrape(fleet=EngineFleet.load(model_name=model), state=routing_state(), interval=interval)
            self._report(results, as_json=as_json)
            raise SystemExit(0 if all(result.ok for result in results) else 1)
        stop = stop_on_signals()
        fleet, loaded_at = None, float("-inf")
        failing: dict[int, str] = {}
        kept = KeptConnection()
        while not stop.is_set():
            if parent_gone(parent_pid):
                return  # the gunicorn that started this scraper is gone
            started = time.monotonic()
            try:
                # The list of workers is read again as often as the gateway's routing table.
                if fleet is None or started - loaded_at >= settings.MMM_ROUTING_REFRESH_SECONDS:
                    kept.before_pass()
                    fleet, loaded_at = EngineFleet.load(model_name=model), started
            except DatabaseError as exc:
                kept.after_pass(failed=True)
                # The database is away: keep reading the engines already known.
                self.stderr.write(f"worker list not reloaded, the database is unavailable: {type(exc).__name__}")
            if fleet is not None:
                results = engines_scrape(fleet=fleet, state=routing_state(), interval=interval)
                if as_json:
                    self._report(results, as_json=True)
                else:
                    self._changes(results, failing)
            if fleet is None or fleet.workers:
                stop.wait(max(interval - (time.monotonic() - started), 0.0))
            else:  # no engine to read: nothing to do until the worker list is read again
                stop.wait(max(loaded_at + settings.MMM_ROUTING_REFRESH_SECONDS - time.monotonic(), 0.0))

    def _changes(self, results, failing: dict[int, str]) -> None:
        for result in results:
            if not result.ok and result.worker_id not in failing:
                self.stdout.write(f"worker {result.worker_id}: scrape failing: {result.error}")
            elif result.ok and result.worker_id in failing:
                self.stdout.write(f"worker {result.worker_id}: scrape ok again")
            if result.ok:
                failing.pop(result.worker_id, None)
            else:
                failing[result.worker_id] = result.error

    def _report(self, results, *, as_json: bool) -> None:
        ok = sum(1 for result in results if result.ok)
        if as_json:
            rows = [
                {
                    "worker_id": result.worker_id,
                    "ok": result.ok,
                    "error": result.error,
                    "waiting": result.signals.waiting if result.ok else None,
                    "running": result.signals.running if result.ok else None,
                    "kv_cache_usage": result.signals.kv_cache_usage if result.ok else None,
                    "adapters": list(result.signals.adapters) if result.ok else [],
                }
                for result in results
            ]
            self.stdout.write(json.dumps({"scraped": len(results), "ok": ok, "results": rows}))
            return
        for result in results:
            if not result.ok:
                self.stdout.write(f"worker {result.worker_id}: {result.error}")
        self.stdout.write(f"scraped {len(results)} engine(s): {ok} ok, {len(results) - ok} failed")
