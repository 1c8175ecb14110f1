from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.models import Scope
from accounts.services import api_key_create


class Command(BaseCommand):
    help = "Create a client API key and print it; the key alone is the last line, and it is shown only this once."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--name", required=True, help="Who or what uses the key.")
        parser.add_argument(
            "--scope",
            required=True,
            action="append",
            choices=Scope.values,
            help="inference, worker or admin; repeat for several.",
        )
        parser.add_argument("--models", default="", help="Comma-separated model names the key may call (default: all).")
        parser.add_argument("--rpm", type=int, default=None, help="Requests per minute (default: no limit).")

    def handle(self, *args, name: str, scope: list[str], models: str, rpm: int | None, **options) -> None:
        allowed = [model.strip() for model in models.split(",") if model.strip()]
        try:
            key, secret = api_key_create(
                name=name, scopes=sorted(set(scope)), allowed_models=allowed, rate_limit_per_minute=rpm
            )
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items())
            ) from None
        self.stdout.write(
            f"Created API key {key.name!r} ({key.prefix}…), scopes {', '.join(key.scopes)}, "
            f"models {', '.join(key.allowed_models) or 'all'}, "
            f"{f'{rpm} requests per minute' if rpm else 'no rate limit'}. It is not stored; copy it now:"
        )
        self.stdout.write(secret)
