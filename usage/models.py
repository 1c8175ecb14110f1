"""Teams, prices, budgets and the usage ledger.

Money is kept as whole nano-dollars (1e-9 USD) wherever it is added up, in the ledger and in
Redis: a price per million tokens with three decimals times a token count is a whole number
of them, so sums are exact and never drift by rounding.
"""

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

NANOS_PER_USD = 1_000_000_000


def usd_to_nanos(value: Decimal | int | float | str | None) -> int:
    return 0 if value is None else int(Decimal(str(value)) * NANOS_PER_USD)


def nanos_to_usd(nanos: int) -> Decimal:
    return (Decimal(nanos) / NANOS_PER_USD).quantize(Decimal("0.000000001"))


def usd_text(nanos: int) -> str:
    """Nano-dollars as a plain decimal string ("0.000058000"), for JSON and CSV."""
    return f"{nanos_to_usd(nanos):f}"


class Team(models.Model):
    name = models.CharField(max_length=200, unique=True, help_text="A group of keys that shares budgets.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TeamMember(models.Model):
    """A key's team: one-to-one on the key, so a key belongs to at most one team."""

    api_key = models.OneToOneField("accounts.ApiKey", on_delete=models.CASCADE, related_name="team_membership")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="members")

    class Meta:
        verbose_name = "team member"

    def __str__(self) -> str:
        return f"{self.api_key} in {self.team}"


_PER_MILLION = {"max_digits": 14, "decimal_places": 3, "validators": [MinValueValidator(0)]}
_PER_UNIT = {"max_digits": 14, "decimal_places": 9, "validators": [MinValueValidator(0)]}


class Price(models.Model):
    """What a model costs from ``effective_from`` until the next price of the same model.

    A change is a new row: the cost of past requests was computed from the row in force when
    they started and is stored on their ledger rows, so it is never rewritten.
    """

    model_name = models.CharField(max_length=200)
    effective_from = models.DateTimeField()
    input_per_million = models.DecimalField("input USD per 1M tokens", default=0, **_PER_MILLION)
    output_per_million = models.DecimalField("output USD per 1M tokens", default=0, **_PER_MILLION)
    cached_per_million = models.DecimalField(
        "cached input USD per 1M tokens",
        null=True,
        blank=True,
        help_text="Empty: cached input tokens cost what other input tokens cost.",
        **_PER_MILLION,
    )
    per_image = models.DecimalField("USD per image", default=0, **_PER_UNIT)
    per_video_second = models.DecimalField("USD per second of video", default=0, **_PER_UNIT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model_name", "-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["model_name", "effective_from"], name="usage_price_one_per_instant")
        ]

    def __str__(self) -> str:
        return f"{self.model_name} from {self.effective_from:%Y-%m-%d %H:%M} UTC"


class Period(models.TextChoices):
    DAY = "day", "calendar day (UTC)"
    MONTH = "month", "calendar month (UTC)"
    ROLLING = "rolling", "rolling window"


class Budget(models.Model):
    """A limit on what one key or one team spends per period, in tokens, in money, or both."""

    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="budgets")
    model_name = models.CharField(max_length=200, blank=True, help_text="Empty: every model.")
    period = models.CharField(max_length=16, choices=Period.choices, default=Period.MONTH)
    window_seconds = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(60)], help_text="The rolling window's length."
    )
    limit_tokens = models.PositiveBigIntegerField(null=True, blank=True, help_text="Input plus output tokens.")
    limit_usd = models.DecimalField(
        null=True, blank=True, max_digits=14, decimal_places=6, validators=[MinValueValidator(0)]
    )
    # Percentages of the limit at which a budget.threshold webhook goes out, once per period.
    thresholds = models.JSONField(default=list, blank=True, help_text="e.g. [80, 100]")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(api_key__isnull=False, team__isnull=True) | Q(api_key__isnull=True, team__isnull=False),
                name="usage_budget_one_subject",
            ),
            models.CheckConstraint(
                condition=Q(limit_tokens__isnull=False) | Q(limit_usd__isnull=False), name="usage_budget_has_limit"
            ),
        ]

    def __str__(self) -> str:
        whose = f"team {self.team}" if self.team_id else f"key {self.api_key}"
        limits = " and ".join(
            part
            for part in (
                f"{self.limit_tokens} tokens" if self.limit_tokens is not None else "",
                f"{self.limit_usd} USD" if self.limit_usd is not None else "",
            )
            if part
        )
        return f"{whose}: {limits} per {self.period_label}" + (f" on {self.model_name}" if self.model_name else "")

    @property
    def period_label(self) -> str:
        return f"{self.window_seconds} s" if self.period == Period.ROLLING else self.period

    def clean(self) -> None:
        # A team may be new and unsaved yet (usage.config_file): the object, not only the id, counts.
        has_team = self.team_id is not None or self._state.fields_cache.get("team") is not None
        if (self.api_key_id is None) == (not has_team):
            raise ValidationError("a budget belongs to exactly one key or one team")
        if self.limit_tokens is None and self.limit_usd is None:
            raise ValidationError("set limit_tokens, limit_usd or both")
        if self.period == Period.ROLLING and not self.window_seconds:
            raise ValidationError({"window_seconds": "a rolling budget needs its window"})
        if not isinstance(self.thresholds, list) or not all(
            isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1000 for value in self.thresholds
        ):
            raise ValidationError({"thresholds": "must be a list of whole percentages, e.g. [80, 100]"})


class Kind(models.TextChoices):
    TOKENS = "tokens", "tokens"
    IMAGE = "image", "image job"
    VIDEO = "video", "video job"


class UsageRecord(models.Model):
    """One request's (or job's) settled usage: the durable ledger.

    Written in batches off the request path (usage.ledger); ``usage_id`` makes a row that a
    retried batch writes twice land once.
    """

    usage_id = models.CharField(max_length=64, unique=True)
    request_id = models.CharField(max_length=64, blank=True)
    settled_at = models.DateTimeField()  # the clock budgets count by (Redis's, when it answered)
    started_at = models.DateTimeField()  # picks the price in force
    api_key_id = models.BigIntegerField(null=True, blank=True)  # not a foreign key: the ledger outlives keys
    api_key_prefix = models.CharField(max_length=16, blank=True)
    team_id = models.BigIntegerField(null=True, blank=True)
    model_name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.TOKENS)
    input_tokens = models.PositiveBigIntegerField(default=0)  # cached ones included, as OpenAI counts
    output_tokens = models.PositiveBigIntegerField(default=0)
    cached_tokens = models.PositiveBigIntegerField(default=0)
    images = models.PositiveIntegerField(default=0)
    video_seconds = models.DecimalField(max_digits=12, decimal_places=3, default=0)
    estimated = models.BooleanField(default=False, help_text="Counted by the gateway, not reported by the upstream.")
    cost_nanos = models.BigIntegerField(default=0)
    price_id = models.BigIntegerField(null=True, blank=True)
    status = models.PositiveSmallIntegerField(default=200)

    class Meta:
        indexes = [
            # usage.reconcile and the budget sums: one subject's rows over a period.
            models.Index(fields=["api_key_id", "settled_at"], name="usage_key_settled"),
            models.Index(fields=["team_id", "settled_at"], name="usage_team_settled"),
            # GET /api/usage and the dashboard: everything over a time range.
            models.Index(fields=["settled_at"], name="usage_settled"),
        ]

    def __str__(self) -> str:
        return f"{self.model_name} {self.input_tokens}+{self.output_tokens} tokens ({self.usage_id})"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def cost_usd(self) -> Decimal:
        return nanos_to_usd(self.cost_nanos)
