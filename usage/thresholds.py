"""Soft limits: a webhook when a budget's spend crosses one of its thresholds (80 %, 100 %).

Settlement returns each counter's figure after the charge, atomically, so exactly one request
sees a threshold crossed in a period, on whichever host it ran; the event's idempotency key
names the budget, the period and the threshold, so a redelivery is recognisable.
"""

import logging

from mmm import database
from usage.catalog import BudgetRule
from webhooks.services import enqueue_event

EVENT_TYPE = "budget.threshold"

logger = logging.getLogger("mmm.usage")


def crossed(rule: BudgetRule, *, before: int, after: int) -> list[int]:
    """The thresholds (percent) that ``before`` was under and ``after`` is at or over."""
    if not rule.limit:
        return []
    return [percent for percent in rule.thresholds if before * 100 < rule.limit * percent <= after * 100]


def budget_threshold_event(*, api_key_id: int | None, rule: BudgetRule, percent: int, spent: int, label: str) -> None:
    """The one place a budget.threshold event leaves the usage app."""
    data = {
        "budget_id": abs(rule.id),
        "owner": "team" if rule.subject.startswith("t") else "key",
        "owner_id": int(rule.subject[1:]),
        "unit": rule.unit,
        "period": rule.period,
        "period_label": label,
        "model": rule.model_name or None,
        "threshold_percent": percent,
        "limit": rule.limit,
        "spent": spent,
    }
    logger.warning("budget %s crossed %d%%: %s of %s %s", abs(rule.id), percent, spent, rule.limit, rule.unit)
    if api_key_id is None:
        return
    # Once per budget, period and threshold: a crossing is seen by one settlement only, and the
    # outbox writes an idempotency key once however often it is given.
    with database.request_path(what="budget threshold webhook"):
        enqueue_event(
            api_key_id=api_key_id,
            event_type=EVENT_TYPE,
            data=data,
            idempotency_key=f"budget:{rule.id}:{label}:{percent}",
        )
