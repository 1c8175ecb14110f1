"""The counters budgets are checked against: the interface both stores share, and the choice.

``reserve`` holds an estimate of a request's cost before its upstream call and refuses it if
any budget would go over; ``settle`` replaces the hold with the real cost once the call is
over; ``release`` drops a hold without a cost (the request was refused later). Each is one
atomic step keyed by the request's usage id, so a retry, a duplicate settle or a second
release changes nothing, and a hold whose process died is dropped when its lease expires.

``RedisBudgetStore`` (usage.budget_store_redis) is exact across every process and host that
shares the Redis; ``LocalBudgetStore`` (usage.budget_store_local) is this process's own, used
without REDIS_URL and while Redis is away.
"""

from dataclasses import dataclass
from typing import Protocol

from usage.catalog import BudgetRule


@dataclass(frozen=True)
class Refused:
    rule_id: int
    left: int  # tokens or nano-dollars still free
    resets_at: float  # epoch seconds


@dataclass(frozen=True)
class Held:
    seeded: bool = True  # False: the counters were empty (a Redis restart) and need reconciling


@dataclass(frozen=True)
class Settled:
    settled_at: float  # the store's clock
    duplicate: bool
    spent: dict[int, int]  # rule id -> spent in its current period, after this settle


class BudgetStore(Protocol):
    def reserve(
        self, *, subject: str, usage_id: str, charges: list[tuple[BudgetRule, int]], lease_seconds: float
    ) -> Held | Refused: ...

    def release(self, *, subject: str, usage_id: str) -> None: ...

    def settle(self, *, subject: str, usage_id: str, charges: list[tuple[BudgetRule, int]]) -> Settled: ...

    def settle_many(self, items: list[tuple[str, str, list[tuple[BudgetRule, int]]]]) -> list[Settled]:
        """``settle`` of each (subject, usage id, charges), in one round trip where the store has them."""

    def spent(self, *, subject: str, rules: list[BudgetRule]) -> dict[int, tuple[int, int]]:
        """rule id -> (spent in its current period, held by reservations in flight)."""

    def now(self) -> float: ...

    def settled_ids(self, *, subject: str) -> frozenset[str]:
        """The usage ids this store remembers settling for the subject."""

    def reconcile(self, *, subject: str, cutoff: float, counters: list[tuple[BudgetRule, str, int]]) -> None:
        """Set each (rule, label) counter to ``ledger amount`` (what the ledger holds settled
        before ``cutoff``) plus what this store settled since ``cutoff``: absolute, so running
        it twice, or on every host at once, inflates nothing."""


_store: BudgetStore | None = None


def budget_store() -> BudgetStore:
    global _store
    if _store is None:
        from django.conf import settings

        if settings.REDIS_URL:
            from usage.budget_store_redis import RedisBudgetStore

            _store = RedisBudgetStore(url=settings.REDIS_URL, prefix=settings.MMM_USAGE_PREFIX)
        else:
            from usage.budget_store_local import LocalBudgetStore

            _store = LocalBudgetStore()
    return _store


def reset_budget_store() -> None:
    """Forget the store (tests change settings between them)."""
    global _store
    _store = None
