"""manage.py prune_requests --older-than 30d: retention for the request log and probe history."""

import re
import time
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from console.models import ProbeRecord, RequestLog

_AGE = re.compile(r"(\d+)([dhm])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}
# Deleting in slices keeps each transaction, and the locks it holds, short on a big table.
BATCH = 10_000


def parse_age(text: str) -> timedelta:
    match = _AGE.fullmatch(text.strip())
    if not match or int(match.group(1)) == 0:
        raise CommandError(
            f"--older-than {text!r}: give a positive whole number of days, hours or minutes, e.g. 30d, 12h, 90m"
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


class Command(BaseCommand):
    help = (
        "Delete request-log rows and probe results older than --older-than (e.g. 30d), in batches, "
        "and print how many went. Run it daily from cron."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", required=True, help="Age to keep: 30d, 12h or 90m.")

    def handle(self, *args, older_than: str, **options) -> None:
        cutoff = timezone.now() - parse_age(older_than)
        started = time.monotonic()
        requests = _delete_in_batches(RequestLog.objects.filter(created_at__lt=cutoff))
        probes = _delete_in_batches(ProbeRecord.objects.filter(checked_at__lt=cutoff))
        self.stdout.write(
            f"pruned {requests} request-log row(s) and {probes} probe result(s) older than "
            f"{cutoff:%Y-%m-%d %H:%M:%S} UTC in {time.monotonic() - started:.2f} s"
        )


def _delete_in_batches(queryset) -> int:
    total = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:BATCH])
        if not ids:
            return total
        deleted, _ = queryset.model.objects.filter(pk__in=ids).delete()
        total += deleted
