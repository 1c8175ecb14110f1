"""Reads of the ledger: usage and cost per key, team and model over time."""

from datetime import datetime

from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import TruncDay, TruncHour

from usage.models import Team, UsageRecord, usd_text

GROUPS = ("day", "hour", "key", "team", "model")


def usage_rows(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    api_key_id: int | None = None,
    api_key_prefix: str | None = None,
    team_id: int | None = None,
    model_name: str | None = None,
) -> QuerySet:
    rows = UsageRecord.objects.all()
    if since is not None:
        rows = rows.filter(settled_at__gte=since)
    if until is not None:
        rows = rows.filter(settled_at__lt=until)
    if api_key_id is not None:
        rows = rows.filter(api_key_id=api_key_id)
    if api_key_prefix:
        rows = rows.filter(api_key_prefix=api_key_prefix)
    if team_id is not None:
        rows = rows.filter(team_id=team_id)
    if model_name:
        rows = rows.filter(model_name=model_name)
    return rows


def usage_summary(*, rows: QuerySet, group_by: list[str]) -> list[dict]:
    """Sums of ``rows`` per group (e.g. ["day", "model"]), oldest and largest first."""
    fields = {
        "day": TruncDay("settled_at"),
        "hour": TruncHour("settled_at"),
        "key": F("api_key_prefix"),
        "team": F("team_id"),
        "model": F("model_name"),
    }
    chosen = {f"g_{name}": fields[name] for name in group_by}
    grouped = rows.annotate(**chosen).values(*chosen) if chosen else rows
    sums = {
        "requests": Count("id"),
        "input_tokens": Sum("input_tokens"),
        "output_tokens": Sum("output_tokens"),
        "cached_tokens": Sum("cached_tokens"),
        "images": Sum("images"),
        "video_seconds": Sum("video_seconds"),
        "cost_nanos": Sum("cost_nanos"),
        "estimated_requests": Count("id", filter=Q(estimated=True)),
    }
    if chosen:
        found = list(grouped.annotate(**sums).order_by(*chosen))
    else:
        found = [grouped.aggregate(**sums)]
    teams = dict(Team.objects.values_list("id", "name")) if "team" in group_by else {}
    summary = []
    for entry in found:
        row = {}
        for name in group_by:
            value = entry[f"g_{name}"]
            if name in ("day", "hour"):
                value = value.isoformat() if value else None
            elif name == "team":
                value = teams.get(value) if value is not None else None
            row[name] = value
        requests = entry["requests"] or 0
        if not requests and not chosen:
            entry = dict.fromkeys(sums, 0)
        row.update(
            requests=requests,
            input_tokens=entry["input_tokens"] or 0,
            output_tokens=entry["output_tokens"] or 0,
            cached_tokens=entry["cached_tokens"] or 0,
            total_tokens=(entry["input_tokens"] or 0) + (entry["output_tokens"] or 0),
            images=entry["images"] or 0,
            video_seconds=str(entry["video_seconds"] or 0),
            cost_usd=usd_text(entry["cost_nanos"] or 0),
            estimated_requests=entry["estimated_requests"] or 0,
        )
        summary.append(row)
    return summary
