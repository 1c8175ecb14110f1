from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import Scope
from accounts.services import api_key_create
from inference.redaction import url_for_display
from usage.services import budget_create, team_join
from webhooks.services import webhook_endpoint_create


def _usd(value: str) -> Decimal:
    try:
        return Decimal(value)
    except InvalidOperation:
        raise ValueError(value) from None  # argparse says which option and value it could not read


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
        parser.add_argument("--team", default="", help="The team the key belongs to (made if new).")
        parser.add_argument("--budget-tokens", type=int, default=None, help="A budget of this many tokens per period.")
        parser.add_argument("--budget-usd", type=_usd, default=None, help="A budget of this many USD per period.")
        parser.add_argument(
            "--budget-period", default="month", choices=["day", "month", "rolling"], help="The budget's period."
        )
        parser.add_argument("--budget-window", type=int, default=None, help="A rolling budget's window in seconds.")
        parser.add_argument("--budget-model", default="", help="The model the budget counts (default: every model).")
        parser.add_argument(
            "--webhook-url", default=None, help="Post the key's events (video.completed, ...) to this URL, signed."
        )
        parser.add_argument(
            "--webhook-events",
            default="",
            help='Comma-separated event types for the webhook ("video.*"; default: all).',
        )

    def handle(
        self,
        *args,
        name: str,
        scope: list[str],
        models: str,
        rpm: int | None,
        webhook_url: str | None,
        webhook_events: str,
        **options,
    ) -> None:
        allowed = [model.strip() for model in models.split(",") if model.strip()]
        budget = options["budget_tokens"] is not None or options["budget_usd"] is not None
        try:
            with transaction.atomic():  # no key without the team, budget and webhook it was asked with
                key, secret = api_key_create(
                    name=name, scopes=sorted(set(scope)), allowed_models=allowed, rate_limit_per_minute=rpm
                )
                if options["team"]:
                    team_join(api_key_id=key.pk, team_name=options["team"])
                if budget:
                    budget_create(
                        api_key_id=key.pk,
                        period=options["budget_period"],
                        limit_tokens=options["budget_tokens"],
                        limit_usd=options["budget_usd"],
                        window_seconds=options["budget_window"],
                        model_name=options["budget_model"],
                    )
                if webhook_url:
                    events = [event.strip() for event in webhook_events.split(",") if event.strip()]
                    endpoint, webhook_secret = webhook_endpoint_create(api_key=key, url=webhook_url, event_types=events)
        except ValidationError as exc:
            errors = exc.message_dict if hasattr(exc, "error_dict") else {"budget": exc.messages}
            raise CommandError(
                "; ".join(f"{field}: {' '.join(messages)}" for field, messages in errors.items())
            ) from None
        if webhook_url:
            self.stdout.write(
                f"Its events ({', '.join(endpoint.event_types) or 'all'}) go to {url_for_display(endpoint.url)}, "
                f"signed with this secret (shown only now): {webhook_secret}"
            )
        self.stdout.write(
            f"Created API key {key.name!r} ({key.prefix}…), scopes {', '.join(key.scopes)}, "
            f"models {', '.join(key.allowed_models) or 'all'}, "
            f"{f'{rpm} requests per minute' if rpm else 'no rate limit'}"
            + (f", team {options['team']}" if options["team"] else "")
            + (", with a budget" if budget else "")
            + ". It is not stored; copy it now:"
        )
        self.stdout.write(secret)
