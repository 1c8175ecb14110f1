"""The usage dashboard: tokens and cost per model over time, and who spent them (an admin page,
charts drawn on the server as the main dashboard's are)."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlencode

from django.contrib import admin
from django.shortcuts import render
from django.utils import timezone

from console import charts
from usage.selectors import usage_rows, usage_summary


@dataclass(frozen=True)
class UsageWindow:
    name: str
    label: str
    buckets: int
    bucket: timedelta
    group: str  # usage.selectors group: "hour" or "day"


WINDOWS = {
    "day": UsageWindow("day", "last day", 24, timedelta(hours=1), "hour"),
    "month": UsageWindow("month", "last 30 days", 30, timedelta(days=1), "day"),
}
TOP = 20


def _bucket_starts(window: UsageWindow, now: datetime) -> list[datetime]:
    if window.group == "hour":
        last = now.replace(minute=0, second=0, microsecond=0)
    else:
        last = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return [last - window.bucket * (window.buckets - 1 - index) for index in range(window.buckets)]


def usage_dashboard(request):
    window = WINDOWS.get(request.GET.get("window", ""), WINDOWS["day"])
    starts = _bucket_starts(window, timezone.now().astimezone(UTC))
    rows = usage_rows(since=starts[0])
    by_time = usage_summary(rows=rows, group_by=[window.group, "model"])
    models = sorted({entry["model"] for entry in by_time})
    index_of = {start.isoformat(): position for position, start in enumerate(starts)}
    tokens = {model: [0.0] * len(starts) for model in models}
    cost = {model: [0.0] * len(starts) for model in models}
    for entry in by_time:
        position = index_of.get(datetime.fromisoformat(entry[window.group]).astimezone(UTC).isoformat())
        if position is not None:
            tokens[entry["model"]][position] = entry["total_tokens"]
            cost[entry["model"]][position] = float(Decimal(entry["cost_usd"]))
    token_series = [charts.Series(model, charts.color_for(index), tokens[model]) for index, model in enumerate(models)]
    cost_series = [charts.Series(model, charts.color_for(index), cost[model]) for index, model in enumerate(models)]
    usage_charts = [
        ("Tokens", charts.line_chart(title="Tokens", series=token_series, starts=starts, value_format=_count)),
        ("Cost (USD)", charts.line_chart(title="Cost in USD", series=cost_series, starts=starts, value_format=_usd)),
    ]
    totals = usage_summary(rows=rows, group_by=["model"])
    keys = sorted(usage_summary(rows=rows, group_by=["key", "team"]), key=_spend, reverse=True)[:TOP]
    teams = sorted(usage_summary(rows=rows, group_by=["team"]), key=_spend, reverse=True)[:TOP]
    export = "/api/usage?" + urlencode(
        {"since": starts[0].isoformat(), "group_by": f"{window.group},key,team,model", "output": "csv"}
    )
    context = {
        **admin.site.each_context(request),
        "title": f"Usage and cost — {window.label}",
        "window": window,
        "windows": WINDOWS.values(),
        "usage_charts": usage_charts if models else [],
        "legend": charts.legend(token_series),
        "models": [{**entry, "color": charts.color_for(models.index(entry["model"]))} for entry in totals],
        "keys": keys,
        "teams": [entry for entry in teams if entry["team"] is not None],
        "export": export,
        "first_start": starts[0],
    }
    return render(request, "usage/dashboard.html", context)


def _spend(entry: dict) -> tuple:
    return Decimal(entry["cost_usd"]), entry["total_tokens"]


def _count(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    return f"{value:g}" if value < 1000 else f"{value / 1000:g}k"


def _usd(value: float) -> str:
    return f"${value:.2f}" if value >= 1 else f"${value:.4g}"
