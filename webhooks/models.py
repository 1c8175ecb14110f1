"""Where a client key's events are posted, and the outbox of posts still to make."""

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from inference.redaction import url_for_display
from registry.fields import EncryptedJSONField, EncryptedQueryURLField


def validate_event_types(value) -> None:
    if not isinstance(value, list) or not all(isinstance(name, str) and name.strip() for name in value):
        raise ValidationError(
            'must be a list of event types, e.g. ["video.completed", "video.*"]', code="invalid_events"
        )


class WebhookEndpoint(models.Model):
    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.CASCADE, related_name="webhook_endpoints")
    # The query string and any password in the URL are encrypted at rest: receivers often take
    # a token there.
    url = EncryptedQueryURLField(max_length=2000, help_text="Where events are POSTed (http or https).")
    # The Standard Webhooks signing secret ("whsec_" + base64), encrypted at rest, shown once.
    secret = EncryptedJSONField(editable=False)
    event_types = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_event_types],
        help_text='Event types sent here ("video.completed", or "video.*" for all video events); empty sends all.',
    )
    description = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["api_key", "id"]
        verbose_name = "webhook endpoint"

    def __str__(self) -> str:
        return f"{url_for_display(self.url)} for {self.api_key}"

    def wants(self, event_type: str) -> bool:
        """Whether this endpoint takes ``event_type`` ("prefix.*" takes every type under prefix)."""
        if not self.event_types:
            return True
        return any(
            wanted == event_type or (wanted.endswith(".*") and event_type.startswith(wanted[:-1]))
            for wanted in self.event_types
        )


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "pending: to be sent, or sent again"
    DELIVERED = "delivered", "delivered: the receiver answered 2xx"
    FAILED = "failed", "failed: given up"


def due_condition(now) -> models.Q:
    """Pending, its time come, and no sender holding a live lease on it."""
    return models.Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now) & (
        models.Q(lease_expires_at__isnull=True) | models.Q(lease_expires_at__lt=now)
    )


class WebhookDeliveryQuerySet(models.QuerySet):
    def due(self, *, now):
        """Pending deliveries whose time has come and that no sender holds a live lease on."""
        return self.filter(due_condition(now))

    def counts(self, *, now) -> dict[str, int]:
        """How many are pending, due (of those) and failed (given up), in one query."""
        return self.aggregate(
            pending=models.Count("pk", filter=models.Q(status=DeliveryStatus.PENDING)),
            due=models.Count("pk", filter=due_condition(now)),
            failed=models.Count("pk", filter=models.Q(status=DeliveryStatus.FAILED)),
        )


class WebhookDelivery(models.Model):
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    # The webhook-id header: one per event, the same on every attempt and every endpoint, so a
    # receiver can drop a message it has already handled.
    event_id = models.CharField(max_length=64)
    event_type = models.CharField(max_length=100)
    idempotency_key = models.CharField(max_length=200)
    # {"type", "timestamp", "data"}, fixed when the event happened: every attempt sends the same.
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # A sender's claim: it alone sends this delivery until the lease expires (see webhooks.delivery).
    lease_token = models.CharField(max_length=32, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    # What went wrong last, as the operator reads it: never a URL's secrets or the signing secret.
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = WebhookDeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "webhook delivery"
        verbose_name_plural = "webhook deliveries"
        constraints = [
            # enqueue_event's idempotency: the same event for the same endpoint is written once.
            models.UniqueConstraint(fields=["endpoint", "idempotency_key"], name="webhook_delivery_once_per_endpoint"),
        ]
        indexes = [
            # deliver_due's scan for pending deliveries whose time has come.
            models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} ({self.status}, {self.attempts} attempt(s))"
