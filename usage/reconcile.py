"""Bringing the budget counters back to the ledger's figures, without inflating anything.

The ledger row of a settled request carries the instant its counters were charged (the
store's clock), and the store remembers what it charged since then for a while
(MMM_USAGE_SETTLED_MEMORY_SECONDS). So a counter is set, absolutely, to

    what the ledger holds settled before the cutoff  +  what the store charged since the cutoff

with the cutoff MMM_USAGE_RECONCILE_LAG_SECONDS back, which the ledger's batched writes have
had time to reach. Each request is counted on exactly one side; a second run, or every host
running it at once after a Redis restart, sets the same figure (the reseed that LiteLLM's
users saw inflate spend N-fold added it instead).
"""

import logging
from datetime import UTC, datetime

from django.conf import settings
from django.db.models import F, Sum

from usage import periods
from usage.budget_store import BudgetStore
from usage.catalog import BudgetRule, catalog
from usage.models import UsageRecord

logger = logging.getLogger("mmm.usage")


def _rows_of(rule: BudgetRule):
    rows = UsageRecord.objects.all()
    owner_id = int(rule.subject[1:])
    rows = rows.filter(team_id=owner_id) if rule.subject.startswith("t") else rows.filter(api_key_id=owner_id)
    if rule.model_name:
        rows = rows.filter(model_name=rule.model_name)
    return rows


def ledger_counters(rule: BudgetRule, *, now: float, cutoff: float) -> list[tuple[BudgetRule, str, int]]:
    """(rule, label, ledger amount settled before ``cutoff``) for each counter of its period."""
    spans = periods.labels(period=rule.period, window=rule.window_seconds, t=now)
    stamp = lambda t: datetime.fromtimestamp(t, UTC)  # noqa: E731
    amount = F("input_tokens") + F("output_tokens") if rule.unit == "tokens" else F("cost_nanos")
    rows = _rows_of(rule).filter(settled_at__gte=stamp(spans[0][1]), settled_at__lt=stamp(min(cutoff, spans[-1][2])))
    if len(spans) == 1:
        total = rows.aggregate(total=Sum(amount))["total"] or 0
        return [(rule, spans[0][0], int(total))]
    sums = dict.fromkeys((label for label, _, _ in spans), 0)
    for settled_at, value in rows.annotate(amount=amount).values_list("settled_at", "amount"):
        label = periods.charge_label(period=rule.period, window=rule.window_seconds, t=settled_at.timestamp())
        if label in sums:
            sums[label] += value
    return [(rule, label, total) for label, total in sums.items()]


def reconcile_subject(*, store: BudgetStore, subject: str, lag_seconds: float | None = None) -> int:
    """Reconcile every budget of one key or team; returns how many counters were set."""
    rules = catalog.current().budgets.get(subject, [])
    if not rules:
        return 0
    lag = settings.MMM_USAGE_RECONCILE_LAG_SECONDS if lag_seconds is None else lag_seconds
    now = store.now()
    cutoff = now - lag
    counters = [counter for rule in rules for counter in ledger_counters(rule, now=now, cutoff=cutoff)]
    store.reconcile(subject=subject, cutoff=cutoff, counters=counters)
    return len(counters)


def reconcile_all(*, store: BudgetStore, lag_seconds: float | None = None) -> tuple[int, int]:
    """(subjects, counters) reconciled: every key and team with a budget."""
    subjects = counters = 0
    for subject in list(catalog.current().budgets):
        counters += reconcile_subject(store=store, subject=subject, lag_seconds=lag_seconds)
        subjects += 1
    return subjects, counters
