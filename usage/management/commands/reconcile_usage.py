import json
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from mmm.command_loop import stop_on_signals
from usage.budget_store import budget_store
from usage.catalog import catalog
from usage.reconcile import reconcile_all


class Command(BaseCommand):
    help = (
        "Set every budget's counters to the ledger's figures (plus what the counters charged since the "
        "reconcile lag), once, or every --every seconds with --loop."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--lag",
            type=float,
            default=None,
            help="Trust the ledger for what was settled longer ago than this many seconds "
            f"(default MMM_USAGE_RECONCILE_LAG_SECONDS, {settings.MMM_USAGE_RECONCILE_LAG_SECONDS:g}).",
        )
        parser.add_argument("--loop", action="store_true", help="Keep reconciling until SIGTERM or SIGINT.")
        parser.add_argument("--every", type=float, default=60.0, help="Seconds between passes with --loop.")
        parser.add_argument("--json", action="store_true", help="One JSON line per pass.")

    def handle(self, *args, lag: float | None, loop: bool, every: float, json: bool, **options) -> None:
        # (stop_on_signals: a set() in the handler itself could wait forever on the event's lock)
        stop = stop_on_signals() if loop else threading.Event()
        while True:
            catalog.refresh()
            subjects, counters = reconcile_all(store=budget_store(), lag_seconds=lag)
            if json:
                self.stdout.write(_json({"subjects": subjects, "counters": counters}))
            else:
                self.stdout.write(f"reconciled {counters} counter(s) of {subjects} key(s) and team(s) with budgets")
            if not loop or stop.wait(every):
                return


def _json(document: dict) -> str:
    return json.dumps(document)
