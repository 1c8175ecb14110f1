"""manage.py prune_responses: retention for stored /v1/responses answers."""

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

# The request log's retention command reads ages and deletes in short slices the same way.
from console.management.commands.prune_requests import _delete_in_batches, parse_age
from response_store.services import responses_older_than


class Command(BaseCommand):
    help = (
        "Delete stored responses (/v1/responses with store: true) older than --older-than, or than "
        "MMM_RESPONSES_RETENTION_DAYS without it, and print how many went. Run it daily from cron."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than", help="Age to keep: 30d, 12h or 90m (default: MMM_RESPONSES_RETENTION_DAYS)."
        )

    def handle(self, *args, older_than: str | None, **options) -> None:
        age = parse_age(older_than) if older_than else timedelta(days=settings.MMM_RESPONSES_RETENTION_DAYS)
        deleted = _delete_in_batches(responses_older_than(age))
        self.stdout.write(f"pruned {deleted} stored response(s) older than {age}")
