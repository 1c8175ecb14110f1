"""Budget counters of this process alone: without REDIS_URL, and while Redis is away.

The same steps as the Redis scripts, under one lock. Each process starts from the ledger
(reconciliation seeds a subject the first time it is seen) and adds what it settles itself,
so N processes that share no Redis may together let a budget go over by what each lets
through before the next reconciliation (docs/usage.md says how much).
"""

import threading
import time
from collections.abc import Callable

from django.conf import settings

from usage import periods
from usage.budget_store import Held, Refused, Settled
from usage.catalog import BudgetRule


class LocalBudgetStore:
    def __init__(self, *, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._lock = threading.Lock()
        self._spent: dict[tuple[str, int, str], int] = {}
        self._reserved: dict[tuple[str, int], int] = {}
        self._holds: dict[tuple[str, str], tuple[float, dict[int, int]]] = {}
        self._done: dict[str, dict[str, tuple[float, list[tuple[int, str, int]]]]] = {}
        self._seeded: set[str] = set()

    def now(self) -> float:
        return self._clock()

    def _period(self, subject: str, rule: BudgetRule, t: float) -> tuple[str, int, float]:
        spans = periods.labels(period=rule.period, window=rule.window_seconds, t=t)
        spent = [self._spent.get((subject, rule.id, label), 0) for label, _, _ in spans]
        if rule.period == "rolling":
            first = next((index for index, value in enumerate(spent) if value > 0), None)
            resets = spans[first][1] + rule.window_seconds if first is not None else t
        else:
            resets = spans[-1][2]
        return spans[-1][0], sum(spent), resets

    def _release(self, subject: str, usage_id: str) -> None:
        hold = self._holds.pop((subject, usage_id), None)
        if hold is not None:
            for rule_id, amount in hold[1].items():
                self._reserved[(subject, rule_id)] = self._reserved.get((subject, rule_id), 0) - amount

    def _release_expired(self, subject: str, t: float) -> None:
        for key, (expires, _) in list(self._holds.items()):
            if key[0] == subject and expires <= t:
                self._release(*key)

    def reserve(
        self, *, subject: str, usage_id: str, charges: list[tuple[BudgetRule, int]], lease_seconds: float
    ) -> Held | Refused:
        t = self._clock()
        with self._lock:
            self._release_expired(subject, t)
            seeded = subject in self._seeded
            if (subject, usage_id) in self._holds or usage_id in self._done.get(subject, {}):
                return Held(seeded=seeded)
            for rule, amount in charges:
                _, spent, resets = self._period(subject, rule, t)
                used = spent + self._reserved.get((subject, rule.id), 0)
                if used + amount > rule.limit:
                    return Refused(rule_id=rule.id, left=max(rule.limit - used, 0), resets_at=resets)
            for rule, amount in charges:
                self._reserved[(subject, rule.id)] = self._reserved.get((subject, rule.id), 0) + amount
            self._holds[(subject, usage_id)] = (t + lease_seconds, {rule.id: amount for rule, amount in charges})
            return Held(seeded=seeded)

    def release(self, *, subject: str, usage_id: str) -> None:
        with self._lock:
            self._release(subject, usage_id)

    def settle(self, *, subject: str, usage_id: str, charges: list[tuple[BudgetRule, int]]) -> Settled:
        t = self._clock()
        with self._lock:
            done = self._done.setdefault(subject, {})
            self._release(subject, usage_id)
            if usage_id in done:
                return Settled(settled_at=t, duplicate=True, spent={})
            charged, spent = [], {}
            for rule, amount in charges:
                label, before, _ = self._period(subject, rule, t)
                if amount > 0:
                    self._spent[(subject, rule.id, label)] = self._spent.get((subject, rule.id, label), 0) + amount
                    charged.append((rule.id, label, amount))
                spent[rule.id] = before + amount
            done[usage_id] = (t, charged)
            horizon = t - settings.MMM_USAGE_SETTLED_MEMORY_SECONDS
            for old in [key for key, (at, _) in done.items() if at < horizon]:
                del done[old]
            return Settled(settled_at=t, duplicate=False, spent=spent)

    def settle_many(self, items: list[tuple[str, str, list[tuple[BudgetRule, int]]]]) -> list[Settled]:
        return [
            self.settle(subject=subject, usage_id=usage_id, charges=charges) for subject, usage_id, charges in items
        ]

    def spent(self, *, subject: str, rules: list[BudgetRule]) -> dict[int, tuple[int, int]]:
        t = self._clock()
        with self._lock:
            self._release_expired(subject, t)
            return {
                rule.id: (self._period(subject, rule, t)[1], self._reserved.get((subject, rule.id), 0))
                for rule in rules
            }

    def settled_ids(self, *, subject: str) -> frozenset[str]:
        with self._lock:
            return frozenset(self._done.get(subject, ()))

    def reconcile(self, *, subject: str, cutoff: float, counters: list[tuple[BudgetRule, str, int]]) -> None:
        with self._lock:
            since: dict[tuple[int, str], int] = {}
            for at, charged in self._done.get(subject, {}).values():
                if at >= cutoff:
                    for rule_id, label, amount in charged:
                        since[(rule_id, label)] = since.get((rule_id, label), 0) + amount
            for rule, label, amount in counters:
                self._spent[(subject, rule.id, label)] = amount + since.get((rule.id, label), 0)
            self._seeded.add(subject)
