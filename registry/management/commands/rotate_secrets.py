from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction

from registry.fields import EncryptedJSONField, EncryptedQueryURLField, EncryptedSecretsJSONField

ENCRYPTED_FIELDS = (EncryptedJSONField, EncryptedQueryURLField, EncryptedSecretsJSONField)


def encrypted_columns() -> list[tuple[type, list[str]]]:
    """Every model with columns encrypted at rest (registry/fields.py), with those columns: the
    workers' headers, URLs and body credentials, webhook endpoints' URLs and signing secrets, and
    whatever another app encrypts, found without this command importing those apps."""
    found = []
    for model in apps.get_models():
        names = [field.name for field in model._meta.concrete_fields if isinstance(field, ENCRYPTED_FIELDS)]
        if names:
            found.append((model, names))
    return found


class Command(BaseCommand):
    help = (
        "Encrypt every stored secret (workers' headers, URLs and body credentials, webhook endpoints' URLs and "
        "signing secrets) again with the first key of MMM_SECRET_KEYS, so that older keys can then be removed."
    )

    def handle(self, *args, **options) -> None:
        counts = []
        with transaction.atomic():
            # Reading decrypts with any configured key; saving encrypts with the first.
            for model, names in encrypted_columns():
                count = 0
                for row in model.objects.select_for_update().only("pk", *names):
                    row.save(update_fields=names)
                    count += 1
                counts.append(f"{count} {model._meta.verbose_name_plural}")
        self.stdout.write(
            f"re-encrypted the stored secrets of {', '.join(counts)} with the first key of MMM_SECRET_KEYS"
        )
