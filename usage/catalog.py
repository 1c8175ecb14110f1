"""What the request path needs to know about prices, budgets and teams, per process.

A snapshot of the three small tables, reloaded every MMM_USAGE_REFRESH_SECONDS by the
background refresh (mmm.background), so a request never waits on the database for them; a
change in the admin, the config file or the command line is in force everywhere within that
time. Without the background loop (tests, manage.py) the request that finds it stale reloads
it. While the database is away the last snapshot keeps serving.
"""

import bisect
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError

from mmm import background, database
from usage.models import Budget, Period, Price, TeamMember, usd_to_nanos

logger = logging.getLogger("mmm.usage")


@dataclass(frozen=True)
class BudgetRule:
    """A budget as the counters see it: who, what it counts, over which period."""

    id: int
    subject: str  # "k<key id>" or "t<team id>": the Redis hash tag of its counters
    model_name: str  # "" for every model
    period: str  # Period value
    window_seconds: int
    limit: int  # tokens, or nano-dollars
    unit: str  # "tokens" or "usd"
    thresholds: tuple[int, ...]

    def applies_to(self, model_name: str) -> bool:
        return not self.model_name or self.model_name == model_name

    def describe(self) -> str:
        whose = f"team {self.subject[1:]}" if self.subject.startswith("t") else f"key {self.subject[1:]}"
        period = f"{self.window_seconds} s rolling window" if self.period == Period.ROLLING else self.period
        scope = f" on model {self.model_name}" if self.model_name else ""
        return f"{whose}'s {self.unit} budget per {period}{scope}"


@dataclass(frozen=True)
class PriceRow:
    id: int
    effective_from: float  # epoch seconds
    input_nanos: int  # per token
    output_nanos: int
    cached_nanos: int
    image_nanos: int
    video_second_nanos: int


@dataclass
class Snapshot:
    loaded_at: float = -1e18
    prices: dict[str, list[PriceRow]] = field(default_factory=dict)  # by model, oldest first
    budgets: dict[str, list[BudgetRule]] = field(default_factory=dict)  # by subject
    team_of_key: dict[int, int] = field(default_factory=dict)


def rules_of(budget: Budget) -> list[BudgetRule]:
    """One rule per limit: a budget in tokens and money is two counters, each exact."""
    subject = f"t{budget.team_id}" if budget.team_id else f"k{budget.api_key_id}"
    common = {
        "id": budget.pk,
        "subject": subject,
        "model_name": budget.model_name,
        "period": budget.period,
        "window_seconds": budget.window_seconds or 0,
        "thresholds": tuple(sorted(set(budget.thresholds or ()))),
    }
    rules = []
    if budget.limit_tokens is not None:
        rules.append(BudgetRule(**common, limit=budget.limit_tokens, unit="tokens"))
    if budget.limit_usd is not None:
        rules.append(BudgetRule(**{**common, "id": -budget.pk}, limit=usd_to_nanos(budget.limit_usd), unit="usd"))
    return rules


def _per_token(per_million) -> int:
    # USD per million tokens with 3 decimals is a whole number of nano-dollars per token.
    return usd_to_nanos(per_million) // 1_000_000


def price_row(price: Price) -> PriceRow:
    return PriceRow(
        id=price.pk,
        effective_from=price.effective_from.timestamp(),
        input_nanos=_per_token(price.input_per_million),
        output_nanos=_per_token(price.output_per_million),
        cached_nanos=_per_token(
            price.input_per_million if price.cached_per_million is None else price.cached_per_million
        ),
        image_nanos=usd_to_nanos(price.per_image),
        video_second_nanos=usd_to_nanos(price.per_video_second),
    )


class Catalog:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._snapshot = Snapshot()
        self._lock = threading.Lock()

    def current(self) -> Snapshot:
        snapshot = self._snapshot
        if self._clock() - snapshot.loaded_at < settings.MMM_USAGE_REFRESH_SECONDS or (
            background.running() and snapshot.loaded_at > 0
        ):
            return snapshot
        if not self._lock.acquire(blocking=snapshot.loaded_at < 0):
            return snapshot  # another request is reloading it
        try:
            with database.request_path(what="usage catalog"):
                self.refresh()
        except DatabaseError as exc:
            logger.warning("prices and budgets could not be reloaded, the last ones serve: %s", exc)
            if snapshot.loaded_at < 0:
                raise
        finally:
            self._lock.release()
        return self._snapshot

    def refresh(self) -> None:
        loaded_at = self._clock()
        try:
            prices: dict[str, list[PriceRow]] = {}
            for price in Price.objects.order_by("model_name", "effective_from"):
                prices.setdefault(price.model_name, []).append(price_row(price))
            budgets: dict[str, list[BudgetRule]] = {}
            for budget in Budget.objects.filter(enabled=True):
                for rule in rules_of(budget):
                    budgets.setdefault(rule.subject, []).append(rule)
            team_of_key = dict(TeamMember.objects.values_list("api_key_id", "team_id"))
        finally:
            database.give_back_connection()
        self._snapshot = Snapshot(loaded_at=loaded_at, prices=prices, budgets=budgets, team_of_key=team_of_key)

    def invalidate(self) -> None:
        self._snapshot = Snapshot()

    def price_at(self, model_name: str, at: datetime | float) -> PriceRow | None:
        rows = self.current().prices.get(model_name)
        if not rows:
            return None
        moment = at if isinstance(at, float) else at.timestamp()
        index = bisect.bisect_right([row.effective_from for row in rows], moment) - 1
        return rows[index] if index >= 0 else None

    def rules_for(self, *, api_key_id: int | None, model_name: str) -> tuple[int | None, list[BudgetRule]]:
        """(the key's team, the budgets that count this request: the key's, then its team's)."""
        if api_key_id is None:
            return None, []
        snapshot = self.current()
        team_id = snapshot.team_of_key.get(api_key_id)
        rules = [rule for rule in snapshot.budgets.get(f"k{api_key_id}", ()) if rule.applies_to(model_name)]
        if team_id is not None:
            rules += [rule for rule in snapshot.budgets.get(f"t{team_id}", ()) if rule.applies_to(model_name)]
        return team_id, rules


catalog = Catalog()
