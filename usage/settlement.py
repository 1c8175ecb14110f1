"""Settling what requests used: the budget counters first, then the ledger row and the thresholds.

A request's settlement is a Redis round trip. On the request path it would be the second one
of every request with a budget (the reservation is the first), and the client would wait for
it. So the request path only queues it (``settle_writer``) and a flusher beside the worker
(a greenlet under gevent, as the request log's) settles what is queued in one pipelined round
trip, however many requests ended meanwhile. The reservation keeps holding the request's
estimate in the budget until then, so no request can start on room that is not there: the
budget is as exact as before, and for the few milliseconds until the flush it counts the
estimate, never less than the real cost. A clean shutdown (gunicorn's worker_exit, atexit)
settles what is left; a crash loses at most the queue, as it loses the ledger's queue, and
the holds of those requests end with their lease.

Where nothing runs in the background (tests, manage.py commands with MMM_USAGE_SETTLE_BEHIND
off) a settlement happens in the caller, as jobs' charges always do.
"""

import atexit
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from console.request_log import RequestLogWriter
from mmm import bulk_rows
from usage import periods, thresholds
from usage.budget_store import Settled, budget_store
from usage.catalog import PriceRow
from usage.ledger import ledger_writer
from usage.metering import Tokens
from usage.models import Kind, UsageRecord
from usage.pricing import amount_for

logger = logging.getLogger("mmm.usage")


@dataclass
class Charge:
    """What one request (or job) used, to be settled against its reservation's budgets."""

    reservation: object  # usage.services.Reservation
    tokens: Tokens
    cost_nanos: int
    price: PriceRow | None
    status: int
    kind: str = Kind.TOKENS
    images: int = 0
    video_seconds: Decimal = Decimal(0)


def settle(charges: list[Charge]) -> list[UsageRecord]:
    """Charge each in its budgets (one round trip for all), queue their ledger rows and send
    the threshold events their charges crossed."""
    settled_of = _charge_budgets(charges)
    rows = []
    for charge in charges:
        settled = settled_of.get(id(charge), [])
        settled_at = datetime.fromtimestamp(settled[0][1].settled_at, UTC) if settled else timezone.now()
        for rules_charged, result in settled:
            if not result.duplicate:
                _send_thresholds(charge, rules_charged, result)
        rows.append(_ledger_row(charge, settled_at=settled_at))
    for row in rows:
        ledger_writer.add(row)
    from usage import metrics

    for row in rows:
        metrics.observe_usage(row)
    return rows


def _charge_budgets(charges: list[Charge]) -> dict[int, list]:
    """id(charge) -> [(its (rule, amount) pairs of one subject, what settling them returned)]."""
    items, owners = [], []
    for charge in charges:
        reservation = charge.reservation
        for subject, rules in reservation.subjects().items():
            pairs = [
                (rule, amount_for(rule, tokens=charge.tokens.total, cost_nanos=charge.cost_nanos)) for rule in rules
            ]
            items.append((subject, reservation.usage_id, pairs))
            owners.append(charge)
    if not items:
        return {}
    try:
        results: list[Settled] = budget_store().settle_many(items)
    except Exception:
        # A bug, not Redis away (the store falls back to itself for that): the ledger row is
        # still written, and the holds end with their lease.
        logger.exception("%d usage settlement(s) could not be charged to their budgets", len(items))
        return {}
    settled_of: dict[int, list] = {}
    for charge, (_, _, pairs), result in zip(owners, items, results, strict=True):
        settled_of.setdefault(id(charge), []).append((pairs, result))
    return settled_of


def _send_thresholds(charge: Charge, pairs: list, settled: Settled) -> None:
    for rule, amount in pairs:
        after = settled.spent.get(rule.id)
        if after is None or not rule.thresholds:
            continue
        for percent in thresholds.crossed(rule, before=after - amount, after=after):
            label = periods.charge_label(period=rule.period, window=rule.window_seconds, t=settled.settled_at)
            try:
                thresholds.budget_threshold_event(
                    api_key_id=charge.reservation.api_key_id, rule=rule, percent=percent, spent=after, label=label
                )
            except Exception:
                logger.exception("budget threshold event for budget %s could not be queued", abs(rule.id))


def _ledger_row(charge: Charge, *, settled_at: datetime) -> UsageRecord:
    reservation, tokens = charge.reservation, charge.tokens
    return bulk_rows.unsaved(
        UsageRecord,
        usage_id=reservation.usage_id,
        request_id=reservation.request_id[:64],
        settled_at=settled_at,
        started_at=reservation.started_at,
        api_key_id=reservation.api_key_id,
        api_key_prefix=reservation.api_key_prefix,
        team_id=reservation.team_id,
        model_name=reservation.model_name[:200],
        kind=charge.kind,
        input_tokens=tokens.input,
        output_tokens=tokens.output,
        cached_tokens=tokens.cached,
        images=charge.images,
        video_seconds=charge.video_seconds,
        estimated=tokens.estimated,
        cost_nanos=charge.cost_nanos,
        price_id=charge.price.id if charge.price else None,
        status=charge.status,
    )


class SettleWriter(RequestLogWriter):
    """The queue of settlements the request path hands off, and its flusher."""

    name = "usage settlement"

    writes_database = False  # Redis, which yields under gevent; the rows go on to the ledger's queue
    wakes_on_every_row = True  # settle as soon as the flusher runs: the hold is the estimate until then

    @property
    def background(self) -> bool:
        return self._background if self._background is not None else settings.MMM_USAGE_SETTLE_BEHIND

    def write(self, batch: list, *, pause=None) -> None:
        settle(batch)  # Redis calls, which yield to the loop by themselves


settle_writer = SettleWriter(batch_size=200)
atexit.register(settle_writer.close)  # registered after the ledger's, so it runs first
