"""Usage on the request path: one reservation before the upstream call, one settlement after.

    reservation = usage_reserve(caller=..., model_name=..., body=...)   # may raise BudgetExceeded
    ... the call ...
    usage_settle(reservation=reservation, tokens=..., status=...)

The reservation holds an estimate (the input's tokens by usage.metering, plus max_tokens or
MMM_USAGE_DEFAULT_OUTPUT_TOKENS) in every budget that counts the request, the key's and then
its team's; a request that does not fit in one of them is refused with 429 budget_exceeded
before any upstream call. Settlement replaces the hold with what the upstream reported (or
what was relayed, for a stream cut early), queues the ledger row, and fires threshold events.
A request already running when its budget runs out finishes: the budget only decides whether
a request may start.
"""

import itertools
import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from mmm import database
from mmm.process import current_pid, random_hex
from usage.budget_store import Held, budget_store
from usage.catalog import BudgetRule, catalog
from usage.exceptions import BudgetExceeded
from usage.metering import Tokens, estimate_tokens, text_chars
from usage.models import Budget, Kind, Team, TeamMember, UsageRecord
from usage.pricing import amount_for, job_cost, token_cost
from usage.reconcile import reconcile_all, reconcile_subject
from usage.settlement import Charge, settle, settle_writer

logger = logging.getLogger("mmm.usage")


@dataclass
class Reservation:
    model_name: str
    api_key_id: int | None
    api_key_prefix: str
    team_id: int | None
    rules: list[BudgetRule]
    input_estimate: int
    request_id: str = ""
    usage_id: str = field(default_factory=lambda: new_usage_id())
    started_at: datetime = field(default_factory=timezone.now)
    held: bool = False  # whether a store holds an estimate for it
    settled: bool = False

    def subjects(self) -> dict[str, list[BudgetRule]]:
        grouped: dict[str, list[BudgetRule]] = {}
        for rule in self.rules:
            grouped.setdefault(rule.subject, []).append(rule)
        return grouped


class _UsageIds:
    """Unique usage ids without a system call per request: 64 random bits per process (drawn
    again after a fork) and a counter. uuid4() reads os.urandom every time, a syscall that cost
    ~100 µs per request on the loaded benchmark machine."""

    def __init__(self) -> None:
        self._pid = -1
        self._prefix = ""
        self._counter = itertools.count()

    def __call__(self) -> str:
        if self._pid != current_pid():
            self._pid, self._prefix = current_pid(), random_hex()[:16]
        return f"{self._prefix}{next(self._counter):x}"


new_usage_id = _UsageIds()


def output_estimate(body: dict) -> int:
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(name) if isinstance(body, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return settings.MMM_USAGE_DEFAULT_OUTPUT_TOKENS


def usage_reserve(
    *, api_key_id: int | None, api_key_prefix: str = "", model_name: str, body, request_id: str = ""
) -> Reservation:
    """Hold the request's estimated cost in its budgets; raise BudgetExceeded if one is spent."""
    team_id, rules = catalog.rules_for(api_key_id=api_key_id, model_name=model_name)
    reservation = Reservation(
        model_name=model_name,
        api_key_id=api_key_id,
        api_key_prefix=api_key_prefix or "",
        team_id=team_id,
        rules=rules if settings.MMM_BUDGETS else [],
        input_estimate=estimate_tokens(text_chars(body)),
        request_id=request_id,
    )
    if not reservation.rules:
        return reservation  # nothing to hold: no Redis call on this request
    estimate = Tokens(input=reservation.input_estimate, output=output_estimate(body))
    cost = token_cost(estimate, catalog.price_at(model_name, reservation.started_at))
    store = budget_store()
    done: list[str] = []
    for subject, rules in reservation.subjects().items():
        charges = [(rule, amount_for(rule, tokens=estimate.total, cost_nanos=cost)) for rule in rules]
        verdict = _hold(store, subject, reservation.usage_id, charges)
        if not isinstance(verdict, Held):
            for held_subject in done:
                store.release(subject=held_subject, usage_id=reservation.usage_id)
            rule = next(rule for rule in rules if rule.id == verdict.rule_id)
            raise BudgetExceeded(rule=rule, left=verdict.left, resets_at=verdict.resets_at, now=store.now())
        done.append(subject)
    reservation.held = True
    return reservation


def usage_check_job(
    *, api_key_id: int | None, model_name: str, images: int = 0, video_seconds: Decimal = Decimal(0)
) -> None:
    """Raise BudgetExceeded when a budget of the key or its team has no room for a job of this
    size at its model's price. A check, not a hold: a job may wait in the queue far longer than
    a reservation's lease, so it is charged when it completes (record_job_usage), and jobs created
    at the same moment may together pass a budget by what they cost (docs/usage.md)."""
    team_id, rules = catalog.rules_for(api_key_id=api_key_id, model_name=model_name)
    if not settings.MMM_BUDGETS or not rules:
        return
    reservation = Reservation(
        model_name=model_name,
        api_key_id=api_key_id,
        api_key_prefix="",
        team_id=team_id,
        rules=rules,
        input_estimate=0,
    )
    price = catalog.price_at(model_name, reservation.started_at)
    cost = job_cost(images=images, video_seconds=video_seconds, price=price)
    store = budget_store()
    for subject, subject_rules in reservation.subjects().items():
        charges = [(rule, amount_for(rule, tokens=0, cost_nanos=cost)) for rule in subject_rules]
        verdict = _hold(store, subject, reservation.usage_id, charges)
        store.release(subject=subject, usage_id=reservation.usage_id)
        if not isinstance(verdict, Held):
            rule = next(rule for rule in subject_rules if rule.id == verdict.rule_id)
            raise BudgetExceeded(rule=rule, left=verdict.left, resets_at=verdict.resets_at, now=store.now())


def _hold(store, subject: str, usage_id: str, charges):
    lease = settings.MMM_USAGE_LEASE_SECONDS
    verdict = store.reserve(subject=subject, usage_id=usage_id, charges=charges, lease_seconds=lease)
    if isinstance(verdict, Held) and not verdict.seeded:
        # The counters are empty: Redis restarted (or this process has not seen the subject).
        # Set them from the ledger, then check this request again against the real figures.
        try:
            with database.request_path(what="budget reconciliation"):
                reconcile_subject(store=store, subject=subject, seed=True)
        except DatabaseError as exc:
            # Counted from what the counters hold until the ledger answers (docs/usage.md).
            logger.warning("budgets of %s could not be reconciled with the ledger: %s", subject, exc)
            return verdict
        finally:
            database.give_back_connection()
        store.release(subject=subject, usage_id=usage_id)
        verdict = store.reserve(subject=subject, usage_id=usage_id, charges=charges, lease_seconds=lease)
    return verdict


def usage_settle(
    *,
    reservation: Reservation,
    tokens: Tokens | None,
    status: int,
    kind: str = Kind.TOKENS,
    images: int = 0,
    video_seconds: Decimal = Decimal(0),
    cost_nanos: int | None = None,
    behind: bool = False,
) -> UsageRecord | None:
    """Charge what the request used (once: a second call for the same reservation is a no-op)
    and queue its ledger row; None when it used nothing. ``behind``: hand the charge to the
    settlement flusher (usage.settlement) and return None, where one runs."""
    if reservation.settled:
        return None
    reservation.settled = True
    tokens = tokens or Tokens()
    price = catalog.price_at(reservation.model_name, reservation.started_at)
    if cost_nanos is None:
        cost_nanos = token_cost(tokens, price)
    if tokens.total <= 0 and cost_nanos <= 0:
        if reservation.rules:
            store = budget_store()
            for subject in reservation.subjects():
                store.release(subject=subject, usage_id=reservation.usage_id)
        return None
    charge = Charge(
        reservation=reservation,
        tokens=tokens,
        cost_nanos=cost_nanos,
        price=price,
        status=status,
        kind=kind,
        images=images,
        video_seconds=video_seconds,
    )
    if behind and reservation.rules and settle_writer.background:
        settle_writer.add(charge)
        return None
    return settle([charge])[0]


def record_job_usage(
    *,
    api_key_id: int | None,
    model_name: str,
    job_id: str,
    images: int = 0,
    video_seconds: float | Decimal = 0,
    started_at: datetime | None = None,
    status: int = 200,
    api_key_prefix: str = "",
) -> UsageRecord | None:
    """Charge an image or video job as its model's price says (per image, per second of video),
    once per ``job_id`` however often it is called, and write its ledger row."""
    seconds = Decimal(str(video_seconds))
    team_id, rules = catalog.rules_for(api_key_id=api_key_id, model_name=model_name)
    reservation = Reservation(
        model_name=model_name,
        api_key_id=api_key_id,
        api_key_prefix=api_key_prefix,
        team_id=team_id,
        rules=rules if settings.MMM_BUDGETS else [],
        input_estimate=0,
        request_id=job_id,
        usage_id=f"job-{job_id}"[:64],
        started_at=started_at or timezone.now(),
    )
    price = catalog.price_at(model_name, reservation.started_at)
    return usage_settle(
        reservation=reservation,
        tokens=None,
        status=status,
        kind=Kind.VIDEO if seconds else Kind.IMAGE,
        images=images,
        video_seconds=seconds,
        cost_nanos=job_cost(images=images, video_seconds=seconds, price=price),
    )


def budgets_left(*, api_key_id: int, model_name: str = "") -> list[dict]:
    """Each budget of a key and its team, with what is spent in its current period and what
    requests in flight hold."""
    team_id, _ = catalog.rules_for(api_key_id=api_key_id, model_name=model_name)
    snapshot = catalog.current()
    subjects = [f"k{api_key_id}"] + ([f"t{team_id}"] if team_id is not None else [])
    store = budget_store()
    found = []
    for subject in subjects:
        rules = snapshot.budgets.get(subject, [])
        if not rules:
            continue
        figures = store.spent(subject=subject, rules=rules)
        for rule in rules:
            spent, held = figures.get(rule.id, (0, 0))
            found.append({"rule": rule, "spent": spent, "held": held})
    return found


def usage_reconcile_due() -> None:
    """The background loop's reconciliation: one process at a time across the fleet when the
    counters are in Redis (a lock that expires), every process for its own counters without."""
    if not settings.MMM_USAGE_RECONCILE_SECONDS or not settings.MMM_BUDGETS:
        return
    store = budget_store()
    if not store_is_shared(store) or store.take_reconcile_turn(seconds=settings.MMM_USAGE_RECONCILE_SECONDS):
        reconcile_all(store=store)


def store_is_shared(store) -> bool:
    return hasattr(store, "take_reconcile_turn")


def team_join(*, api_key_id: int, team_name: str) -> Team:
    """Put a key in a team (made if new); a key is in at most one team, so this moves it."""
    team, _ = Team.objects.get_or_create(name=team_name)
    TeamMember.objects.update_or_create(api_key_id=api_key_id, defaults={"team": team})
    catalog.invalidate()
    return team


def budget_create(
    *,
    api_key_id: int | None = None,
    team_id: int | None = None,
    period: str,
    limit_tokens: int | None = None,
    limit_usd: Decimal | None = None,
    window_seconds: int | None = None,
    model_name: str = "",
    thresholds: list[int] | None = None,
) -> Budget:
    budget = Budget(
        api_key_id=api_key_id,
        team_id=team_id,
        period=period,
        limit_tokens=limit_tokens,
        limit_usd=limit_usd,
        window_seconds=window_seconds,
        model_name=model_name,
        thresholds=[80, 100] if thresholds is None else thresholds,
    )
    budget.full_clean()
    budget.save()
    catalog.invalidate()
    return budget
