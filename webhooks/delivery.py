"""Sending the outbox: each due delivery is claimed, signed per the Standard Webhooks
specification, posted, and recorded as delivered or tried again later.

Several senders (``deliver_webhooks --loop`` on several hosts) may run at once. A sender claims
a delivery with a conditional UPDATE that sets a lease, as probe_workers claims rows: only a
delivery that is due and holds no live lease matches, so two senders never both claim it. The
lease outlasts the longest attempt by far, so a delivery is posted twice only if a sender was
stopped after posting and before recording it (then the receiver sees the same webhook-id
again, which the specification tells it to drop). A sender that dies mid-attempt leaves a lease
that expires, and the delivery is taken over.
"""

import logging
import secrets
import threading
from datetime import UTC, datetime, timedelta

import urllib3
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from standardwebhooks import Webhook

from inference import egress, upstream
from inference.redaction import redact_url, secret_values
from webhooks.models import DeliveryStatus, WebhookDelivery

logger = logging.getLogger("mmm.webhooks")

# A lease lasts one attempt's timeout and this: the database writes around it, a slow DNS answer.
LEASE_MARGIN_SECONDS = 60.0
# A receiver's answer is read only to show its start in last_error.
MAX_ANSWER_BYTES = 64 * 1024

_pool_lock = threading.Lock()
_pool: urllib3.PoolManager | None = None


def webhook_pool() -> urllib3.PoolManager:
    """The sender's connection pools; every connection they open is checked against the egress policy."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = upstream.new_pool(pool_size=8)
    return _pool


def deliver_due(*, limit: int, now: datetime | None = None, pool: urllib3.PoolManager | None = None) -> int:
    """Send up to ``limit`` deliveries whose time has come; return how many were attempted.

    ``now`` is when "due" is judged and leases are counted from (tests move it on to reach a
    retry); the signature's timestamp is always the real time of the attempt, which receivers
    check against their clock.
    """
    clock = (lambda: now) if now is not None else timezone.now
    attempted = 0
    for delivery in claim_due(limit=limit, now=clock()):
        # Each attempt renews the lease first: a batch may take long to work through, and a
        # delivery whose lease ran out meanwhile may have been taken over by another sender.
        if not _renew(delivery, now=clock()):
            continue
        _attempt(delivery, now=clock(), pool=pool or webhook_pool())
        attempted += 1
    return attempted


def _lease() -> timedelta:
    return timedelta(seconds=settings.MMM_WEBHOOK_TIMEOUT + LEASE_MARGIN_SECONDS)


def claim_due(*, limit: int, now: datetime) -> list[WebhookDelivery]:
    """Lease up to ``limit`` due deliveries to this sender, oldest first, in one UPDATE."""
    # A read first: most passes of a looping sender find nothing due, and the claim is a write
    # transaction (on SQLite the database's one write lock, taken every second for nothing,
    # beside the request log's writers). A delivery that falls due just after this read waits
    # for the next pass, as one that fell due just after the claim would.
    if not WebhookDelivery.objects.due(now=now).exists():
        return []
    token = secrets.token_hex(16)
    with transaction.atomic():
        # On PostgreSQL, FOR UPDATE SKIP LOCKED lets a sender claiming at the same moment pass
        # over the rows this one is taking instead of queueing behind them, so senders split the
        # outbox. The UPDATE checks "due" again itself, so a row claimed by someone else since
        # is never taken (SQLite has no SKIP LOCKED, and one writer at a time anyway).
        # The candidates are read first, not given to the UPDATE as a subquery: PostgreSQL may
        # run a LIMIT ... SKIP LOCKED subquery more than once in one UPDATE, and then leased more
        # than ``limit`` rows (tests/test_webhooks.py's pass summary showed 2 for a limit of 1).
        candidates = list(
            WebhookDelivery.objects.due(now=now)
            .order_by("next_attempt_at", "id")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:limit]
        )
        WebhookDelivery.objects.filter(pk__in=candidates).due(now=now).update(
            lease_token=token, lease_expires_at=now + _lease()
        )
    return list(
        WebhookDelivery.objects.select_related("endpoint").filter(lease_token=token).order_by("next_attempt_at", "id")
    )


def _renew(delivery: WebhookDelivery, *, now: datetime) -> bool:
    return bool(
        WebhookDelivery.objects.filter(pk=delivery.pk, lease_token=delivery.lease_token).update(
            lease_expires_at=now + _lease()
        )
    )


def signed_headers(*, secret: str, event_id: str, body: str, sent_at: datetime) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body``, signed with ``secret`` at ``sent_at``."""
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(secret).sign(event_id, sent_at, body),
    }


def _attempt(delivery: WebhookDelivery, *, now: datetime, pool: urllib3.PoolManager) -> None:
    endpoint = delivery.endpoint
    where = redact_url(endpoint.url)
    if not endpoint.enabled:
        _record(delivery, now=now, status=DeliveryStatus.FAILED, error="the endpoint was disabled")
        return
    try:
        egress.policy().check_url(endpoint.url)
    except egress.EgressDenied as exc:
        # Not tried again: the URL resolves somewhere the gateway must never post to.
        _record(delivery, now=now, status=DeliveryStatus.FAILED, error=f"refused by the egress policy: {exc}")
        logger.warning(
            "webhook %s %s to %s refused by the egress policy", delivery.event_type, delivery.event_id, where
        )
        return
    # The signed text is the sent body: upstream.send writes json_body as encoded_body does.
    body = upstream.encoded_body(delivery.payload).decode("utf-8")
    headers = signed_headers(secret=endpoint.secret, event_id=delivery.event_id, body=body, sent_at=datetime.now(UTC))
    headers["User-Agent"] = "mmm-webhooks"
    request = upstream.UpstreamRequest("POST", endpoint.url, headers=headers, json_body=delivery.payload)
    try:
        answer = upstream.send(request, timeout=settings.MMM_WEBHOOK_TIMEOUT, max_bytes=MAX_ANSWER_BYTES, pool=pool)
    except upstream.UpstreamError as exc:
        _retry_or_give_up(delivery, now=now, status_code=None, error=str(exc))
        logger.info("webhook %s %s to %s failed: %s", delivery.event_type, delivery.event_id, where, exc)
        return
    if 200 <= answer.status < 300:
        _record(delivery, now=now, status=DeliveryStatus.DELIVERED, status_code=answer.status)
        logger.info("webhook %s %s to %s delivered (%s)", delivery.event_type, delivery.event_id, where, answer.status)
        return
    said = answer.snippet(secrets=secret_values(headers={}, url=endpoint.url, body=None))
    error = f"the receiver answered {answer.status}" + (f": {said}" if said else "")
    _retry_or_give_up(delivery, now=now, status_code=answer.status, error=error)
    logger.info("webhook %s %s to %s: %s", delivery.event_type, delivery.event_id, where, error)


def backoff_seconds(attempts: int) -> float:
    """The wait after the ``attempts``-th failed attempt: doubling from MMM_WEBHOOK_BACKOFF_SECONDS."""
    return min(settings.MMM_WEBHOOK_BACKOFF_MAX_SECONDS, settings.MMM_WEBHOOK_BACKOFF_SECONDS * 2 ** (attempts - 1))


def _retry_or_give_up(delivery: WebhookDelivery, *, now: datetime, status_code: int | None, error: str) -> None:
    attempts = delivery.attempts + 1
    if attempts >= settings.MMM_WEBHOOK_MAX_ATTEMPTS:
        _record(
            delivery,
            now=now,
            status=DeliveryStatus.FAILED,
            status_code=status_code,
            error=f"gave up after {attempts} attempt(s); last: {error}",
        )
        return
    _record(
        delivery,
        now=now,
        status=DeliveryStatus.PENDING,
        status_code=status_code,
        error=error,
        next_attempt_at=now + timedelta(seconds=backoff_seconds(attempts)),
    )


def _record(
    delivery: WebhookDelivery,
    *,
    now: datetime,
    status: str,
    error: str = "",
    status_code: int | None = None,
    next_attempt_at: datetime | None = None,
) -> None:
    changes = {
        "status": status,
        "attempts": delivery.attempts + 1,
        "last_error": error,
        "last_status_code": status_code,
        "lease_token": "",
        "lease_expires_at": None,
    }
    if status == DeliveryStatus.DELIVERED:
        changes["delivered_at"] = now
    if next_attempt_at is not None:
        changes["next_attempt_at"] = next_attempt_at
    # Only while our lease holds: if it ran out and another sender took the delivery over,
    # that sender's record is the one that stands.
    if not WebhookDelivery.objects.filter(pk=delivery.pk, lease_token=delivery.lease_token).update(**changes):
        logger.warning("webhook delivery %s was taken over by another sender before it was recorded", delivery.pk)
