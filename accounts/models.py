"""Client API keys: who may call the gateway, for what, and how often."""

import hashlib

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone


class Scope(models.TextChoices):
    INFERENCE = "inference", "inference: completions and /v1/*"
    WORKER = "worker", "worker: register and take offline its own workers"
    ADMIN = "admin", "admin: everything, including other owners' workers"


def validate_scopes(value) -> None:
    if not isinstance(value, list) or not value:
        raise ValidationError("must be a non-empty list of scopes", code="invalid_scopes")
    unknown = [scope for scope in value if scope not in Scope.values]
    if unknown:
        raise ValidationError(
            f"unknown scope(s) {', '.join(map(str, unknown))}; use {', '.join(Scope.values)}", code="invalid_scopes"
        )


def validate_model_names(value) -> None:
    if not isinstance(value, list) or not all(isinstance(name, str) and name.strip() for name in value):
        raise ValidationError("must be a list of model names", code="invalid_models")


def secret_digest(secret: str) -> str:
    """SHA-256 of a key: the key is 32 random bytes, so a slow password hash would add ~100 ms
    to every request and no safety (nobody can guess 256 bits, however fast the hash)."""
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKey(models.Model):
    name = models.CharField(max_length=200, help_text="Who or what uses this key, for people to read.")
    # The key's public start, shown in lists and logs and used to find the row; never the secret.
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list, validators=[validate_scopes])
    allowed_models = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_model_names],
        help_text="Model names this key may call; empty allows all.",
    )
    rate_limit_per_minute = models.PositiveIntegerField(
        "requests per minute",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Empty means no limit. Exact across processes and hosts when REDIS_URL is set.",
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked = models.BooleanField(default=False)
    # Written at most once a minute per process (see accounts.keys), not on every request.
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_usable(self) -> bool:
        return not self.revoked and (self.expires_at is None or self.expires_at > timezone.now())
