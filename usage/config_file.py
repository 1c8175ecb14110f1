"""The ``usage:`` section of a fleet file: prices, teams and their keys, budgets.

    usage:
      prices:
        gpt-4o:
          - {effective_from: 2026-12-01T00:00:00Z, input_per_million: 2.5, output_per_million: 10}
      teams:
        research:
          keys: [abcd1234]                         # key prefixes (mmm_<prefix>_...)
          budgets: [{period: month, limit_usd: 500, thresholds: [80, 100]}]
      keys:
        abcd1234:
          budgets: [{period: day, limit_tokens: 100000, model: gpt-4o}]

It adds and changes; it deletes nothing (a price is history, and a budget is switched off
with ``enabled: false`` or deleted in the admin). A budget is named by its owner, model,
period and window: the file's limits and thresholds replace that budget's. A price already
charged to requests cannot change (past cost is not rewritten): add one with a later time.
"""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.dateparse import parse_datetime

from accounts.models import ApiKey
from usage.catalog import catalog
from usage.models import Budget, Price, Team, TeamMember, UsageRecord

PRICE_FIELDS = ("input_per_million", "output_per_million", "cached_per_million", "per_image", "per_video_second")


@dataclass
class UsagePlan:
    changes: list[str] = field(default_factory=list)
    writes: list = field(default_factory=list)  # callables, run in order in one transaction

    def apply(self) -> None:
        with transaction.atomic():
            for write in self.writes:
                write()
        catalog.invalidate()


def _decimal(value) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ValueError(value) from None


def _moment(value) -> datetime | None:
    if isinstance(value, datetime):
        return value
    return parse_datetime(str(value)) if value is not None else None


def usage_plan(section: dict | None, *, line_of) -> tuple[UsagePlan, list[str]]:
    """(the plan, problems as "line N: what"); ``line_of(path)`` finds a value's line."""
    plan, problems = UsagePlan(), []
    if not section:
        return plan, problems
    for model_name, prices in (section.get("prices") or {}).items():
        for index, spec in enumerate(prices or []):
            path = ["usage", "prices", model_name, index]
            moment = _moment(spec.get("effective_from"))
            if moment is None or moment.tzinfo is None:
                problems.append(f"{line_of([*path, 'effective_from'])}: effective_from: an ISO 8601 time with its zone")
                continue
            wanted = {
                name: _decimal(spec.get(name, None if name == "cached_per_million" else 0)) for name in PRICE_FIELDS
            }
            _stage_price(plan, problems, model_name, moment, wanted, where=line_of(path))
    keys = {key.prefix: key for key in ApiKey.objects.all()}
    for team_name, team_spec in (section.get("teams") or {}).items():
        team = Team.objects.filter(name=team_name).first()
        if team is None:
            team = Team(name=team_name)
            plan.changes.append(f"+ create team {team_name}")
            plan.writes.append(team.save)
        for index, prefix in enumerate((team_spec or {}).get("keys") or []):
            key = keys.get(prefix)
            if key is None:
                problems.append(
                    f"{line_of(['usage', 'teams', team_name, 'keys', index])}: no API key has prefix {prefix!r}"
                )
                continue
            member = TeamMember.objects.filter(api_key=key).select_related("team").first()
            if member is None or member.team.name != team_name:
                plan.changes.append(f"~ key {prefix} joins team {team_name}")
                plan.writes.append(
                    lambda key=key, team=team: TeamMember.objects.update_or_create(api_key=key, defaults={"team": team})
                )
        for index, spec in enumerate((team_spec or {}).get("budgets") or []):
            _stage_budget(
                plan,
                problems,
                spec,
                owner={"team": team},
                what=f"team {team_name}",
                where=line_of(["usage", "teams", team_name, "budgets", index]),
            )
    for prefix, key_spec in (section.get("keys") or {}).items():
        key = keys.get(prefix)
        if key is None:
            problems.append(f"{line_of(['usage', 'keys', prefix])}: no API key has prefix {prefix!r}")
            continue
        for index, spec in enumerate((key_spec or {}).get("budgets") or []):
            _stage_budget(
                plan,
                problems,
                spec,
                owner={"api_key": key},
                what=f"key {prefix}",
                where=line_of(["usage", "keys", prefix, "budgets", index]),
            )
    return plan, problems


def _stage_price(
    plan: UsagePlan, problems: list[str], model_name: str, moment: datetime, wanted: dict, *, where: int
) -> None:
    price = Price.objects.filter(model_name=model_name, effective_from=moment).first()
    what = f"price of {model_name} from {moment.isoformat()}"
    if price is None:
        plan.changes.append(f"+ create {what}")
        plan.writes.append(lambda: Price.objects.create(model_name=model_name, effective_from=moment, **wanted))
        return
    changed = [name for name, value in wanted.items() if getattr(price, name) != value]
    if not changed:
        return
    if UsageRecord.objects.filter(price_id=price.pk).exists():
        problems.append(
            f"{where}: {what} was charged to requests and cannot change; add a price with a later effective_from"
        )
        return
    plan.changes.append(f"~ update {what}: {', '.join(changed)}")
    for name in changed:
        setattr(price, name, wanted[name])
    plan.writes.append(price.save)


def _stage_budget(plan: UsagePlan, problems: list[str], spec: dict, *, owner: dict, what: str, where: int) -> None:
    match = {
        "model_name": spec.get("model", ""),
        "period": spec["period"],
        "window_seconds": spec.get("window_seconds"),
    }
    saved_owner = all(value.pk for value in owner.values())
    budget = Budget.objects.filter(**owner, **match).first() if saved_owner else None
    fields = {
        "limit_tokens": spec.get("limit_tokens"),
        "limit_usd": _decimal(spec.get("limit_usd")),
        "thresholds": spec.get("thresholds", [80, 100]),
        "enabled": spec.get("enabled", True),
    }
    label = f"budget of {what} per {spec['period']}" + (f" on {match['model_name']}" if match["model_name"] else "")
    if budget is None:
        budget = Budget(**owner, **match, **fields)
        plan.changes.append(f"+ create {label}")
    else:
        changed = [name for name, value in fields.items() if getattr(budget, name) != value]
        if not changed:
            return
        for name in changed:
            setattr(budget, name, fields[name])
        plan.changes.append(f"~ update {label}: {', '.join(changed)}")
    try:
        budget.clean()
    except ValidationError as exc:
        problems.append(f"{where}: {' '.join(exc.messages)}")
        return
    plan.writes.append(budget.save)  # a new team's budget: the team is saved first, and Django takes its id
