from django.core.management.base import BaseCommand
from django.db import transaction

from registry.models import Worker

# Columns encrypted at rest: header values, the URLs' passwords and query strings, and the
# credential-named fields of body templates and legacy options (registry/fields.py).
SECRET_FIELDS = ["headers", "req_url_template", "health_url", "body", "legacy_options"]


class Command(BaseCommand):
    help = (
        "Encrypt every worker's stored secrets again with the first key of MMM_SECRET_KEYS, "
        "so that older keys can then be removed from the list."
    )

    def handle(self, *args, **options) -> None:
        count = 0
        with transaction.atomic():
            # Reading decrypts with any configured key; saving encrypts with the first.
            for worker in Worker.objects.select_for_update().only("pk", *SECRET_FIELDS):
                worker.save(update_fields=SECRET_FIELDS)
                count += 1
        self.stdout.write(
            f"re-encrypted the headers, URL passwords and query strings and body credentials of {count} worker(s) "
            "with the first key of MMM_SECRET_KEYS"
        )
