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


def ledger_counters(
    rule: BudgetRule, *, now: float, cutoff: float, excluding: frozenset[str] = frozenset()
) -> list[tuple[BudgetRule, str, int]]:
    """(rule, label, ledger amount settled before ``cutoff``, less the ``excluding`` usage ids)
    for each counter of its period."""
    spans = periods.labels(period=rule.period, window=rule.window_seconds, t=now)
    stamp = lambda t: datetime.fromtimestamp(t, UTC)  # noqa: E731
    amount = F("input_tokens") + F("output_tokens") if rule.unit == "tokens" else F("cost_nanos")
    rows = _rows_of(rule).filter(settled_at__gte=stamp(spans[0][1]), settled_at__lt=stamp(min(cutoff, spans[-1][2])))
    if excluding:
        rows = rows.exclude(usage_id__in=excluding)
    if len(spans) == 1:
        total = rows.aggregate(total=Sum(amount))["total"] or 0
        return [(rule, spans[0][0], int(total))]
    sums = dict.fromkeys((label for label, _, _ in spans), 0)
    for settled_at, value in rows.annotate(amount=amount).values_list("settled_at", "amount"):
        label = periods.charge_label(period=rule.period, window=rule.window_seconds, t=settled_at.timestamp())
        if label in sums:
            sums[label] += value
    return [(rule, label, total) for label, total in sums.items()]


# Seeding excludes the settled ids a store remembers from the ledger's sums; past this many it
# takes the lag's way instead (a list that long would make a slow query).
_SEED_MAX_IDS = 20_000


def reconcile_subject(*, store: BudgetStore, subject: str, lag_seconds: float | None = None, seed: bool = False) -> int:
    """Reconcile every budget of one key or team; returns how many counters were set.

    ``seed``: the store lost or never had this subject's figures (a Redis restart, a process
    that has not seen it), so it holds only what it settled since. Then every ledger row counts,
    less those the store settled itself: they are in the store's memory, settled before now,
    and a row settled after now is not in the ledger's sum at all. Nothing is left to the lag.
    """
    rules = catalog.current().budgets.get(subject, [])
    if not rules:
        return 0
    now = store.now()
    if seed:
        remembered = store.settled_ids(subject=subject)
        if len(remembered) <= _SEED_MAX_IDS:
            counters = [
                counter
                for rule in rules
                for counter in ledger_counters(rule, now=now, cutoff=now, excluding=remembered)
            ]
            store.reconcile(subject=subject, cutoff=0.0, counters=counters)
            return len(counters)
    lag = settings.MMM_USAGE_RECONCILE_LAG_SECONDS if lag_seconds is None else lag_seconds
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
