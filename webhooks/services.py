"""Writes of webhooks: register an endpoint for a key, and put an event in the outbox."""

import base64
import hashlib
import secrets
from datetime import UTC, datetime
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

from accounts.models import ApiKey
from inference import egress
from webhooks.models import WebhookDelivery, WebhookEndpoint


def new_secret() -> str:
    """A Standard Webhooks signing secret: "whsec_" and 24 random bytes in base64 (the spec
    asks for 24 to 64)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def webhook_url_check(url: str) -> None:
    """Refuse a URL the gateway would not post to: not http(s), no host, or a destination the
    egress policy refuses (a cloud metadata address above all). Raises ValidationError on url."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValidationError({"url": "is not a URL"}) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError({"url": "must be an http:// or https:// URL with a host"})
    try:
        egress.policy().check_url(url)
    except egress.EgressDenied as exc:
        raise ValidationError({"url": f"refused by the egress policy: {exc}"}) from None


def webhook_endpoint_create(
    *, api_key: ApiKey, url: str, event_types: list[str] | None = None, description: str = ""
) -> tuple[WebhookEndpoint, str]:
    """Register ``url`` for ``api_key``'s events and return (row, signing secret). The secret
    is stored encrypted and shown to the operator this once."""
    webhook_url_check(url)
    secret = new_secret()
    endpoint = WebhookEndpoint(
        api_key=api_key, url=url, secret=secret, event_types=list(event_types or []), description=description
    )
    endpoint.full_clean()
    endpoint.save()
    return endpoint, secret


def event_id_for(*, api_key_id: int, idempotency_key: str) -> str:
    """The webhook-id of an event: derived from its key, so the same event always has the same
    id, on every attempt and every endpoint, however often it is enqueued."""
    digest = hashlib.sha256(f"{api_key_id}\x00{idempotency_key}".encode()).hexdigest()
    return f"evt_{digest[:32]}"


def enqueue_event(
    *, api_key_id: int, event_type: str, data: dict, idempotency_key: str, occurred_at: datetime | None = None
) -> None:
    """Write one delivery of this event for each enabled endpoint of the key that wants it.

    Runs in the caller's transaction, so the event is sent if and only if the caller's change
    (a job completed, a budget crossed) is committed. Enqueueing the same ``idempotency_key``
    again writes nothing more (say "video.completed:<job id>"). ``manage.py deliver_webhooks``
    sends them.
    """
    endpoints = [
        endpoint
        for endpoint in WebhookEndpoint.objects.filter(api_key_id=api_key_id, enabled=True)
        if endpoint.wants(event_type)
    ]
    if not endpoints:
        return
    occurred_at = occurred_at or datetime.now(UTC)
    payload = {
        "type": event_type,
        "timestamp": occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": data,
    }
    event_id = event_id_for(api_key_id=api_key_id, idempotency_key=idempotency_key)
    # ignore_conflicts: ON CONFLICT DO NOTHING on the unique (endpoint, idempotency_key), which
    # neither raises nor spoils the caller's transaction when the event is already there.
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                endpoint=endpoint,
                event_id=event_id,
                event_type=event_type,
                idempotency_key=idempotency_key,
                payload=payload,
            )
            for endpoint in endpoints
        ],
        ignore_conflicts=True,
    )
