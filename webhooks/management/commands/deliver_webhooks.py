"""manage.py deliver_webhooks: send the webhooks that are due once (for cron), or keep sending."""

import json
import threading
import time

from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError
from django.utils import timezone

from mmm.command_loop import KeptConnection, add_loop_arguments, parent_gone, stop_on_signals
from webhooks.delivery import deliver_due
from webhooks.models import WebhookDelivery


class Command(BaseCommand):
    help = (
        "Post every webhook delivery that is due to its endpoint, signed per the Standard Webhooks "
        "specification; a failed one is tried again later with a growing wait. Several may run at once, "
        "on several hosts: each delivery is claimed by one of them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_loop_arguments(parser, keeps="sending")
        parser.add_argument("--interval", type=float, default=1.0, help="Seconds between passes with --loop.")
        parser.add_argument("--limit", type=int, default=100, help="Most deliveries attempted in one pass.")

    def handle(
        self, *args, loop: bool, interval: float, limit: int, parent_pid: int | None, as_json: bool, **options
    ) -> None:
        if interval <= 0 or limit < 1:
            self.stderr.write("--interval must be above 0 and --limit at least 1")
            raise SystemExit(2)
        stop = stop_on_signals() if loop else threading.Event()
        kept = KeptConnection()
        while True:
            failed = False
            kept.before_pass()
            try:
                attempted = self.run_pass(limit=limit, as_json=as_json)
            except DatabaseError as exc:
                if not loop:
                    raise
                # The outbox is in the database: nothing can be sent until it is back.
                self.stderr.write(f"webhook pass skipped, the database is unavailable: {type(exc).__name__}")
                attempted, failed = 0, True
            if not loop:
                return
            kept.after_pass(failed=failed)
            if parent_gone(parent_pid):
                return
            # A full pass means more may be due already: go on at once instead of waiting.
            if attempted < limit and stop.wait(interval):
                return
            if stop.is_set():
                return

    def run_pass(self, *, limit: int, as_json: bool) -> int:
        started = time.monotonic()
        # One query while nothing is due (a looping sender makes a pass a second): the counts
        # say whether to claim at all, and are the summary unless something was sent.
        counts = WebhookDelivery.objects.counts(now=timezone.now())
        attempted = deliver_due(limit=limit) if counts["due"] else 0
        if attempted:
            counts = WebhookDelivery.objects.counts(now=timezone.now())
        summary = {"attempted": attempted, **counts, "seconds": round(time.monotonic() - started, 3)}
        if as_json:
            self.stdout.write(json.dumps(summary))
        elif attempted or not self._quiet_pass(summary):
            self.stdout.write(
                f"attempted {attempted} webhook deliver{'y' if attempted == 1 else 'ies'}; "
                f"{summary['pending']} pending ({summary['due']} due), {summary['failed']} given up, "
                f"in {summary['seconds']:.2f} s"
            )
        return attempted

    def _quiet_pass(self, summary: dict) -> bool:
        # With --loop most passes find nothing; one line a second of that would bury the rest.
        quiet = self._last_summary == (summary["pending"], summary["failed"])
        self._last_summary = (summary["pending"], summary["failed"])
        return quiet

    _last_summary: tuple[int, int] | None = None
