"""GET /api/usage (admin: anyone's, as JSON or CSV) and GET /v1/usage (a key's own)."""

import csv
import io
from datetime import UTC, datetime

from django.http import HttpResponse
from rest_framework import serializers
from rest_framework.exceptions import NotAuthenticated
from rest_framework.response import Response

from accounts.caller import Caller
from accounts.permissions import AdminAccess
from inference.openai_views import OpenAIView
from mmm.api_view import GatewayAPIView
from usage.models import Team, usd_text
from usage.selectors import GROUPS, usage_rows, usage_summary
from usage.services import budgets_left

CSV_COLUMNS = (
    *GROUPS,
    "requests",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "total_tokens",
    "images",
    "video_seconds",
    "cost_usd",
    "estimated_requests",
)


class GroupByField(serializers.CharField):
    def to_internal_value(self, data) -> list[str]:
        names = [name.strip() for name in super().to_internal_value(data).split(",") if name.strip()]
        unknown = [name for name in names if name not in GROUPS]
        if unknown:
            raise serializers.ValidationError(f"unknown group {', '.join(unknown)}; use any of {', '.join(GROUPS)}")
        return list(dict.fromkeys(names))


class UsageQuery(serializers.Serializer):
    since = serializers.DateTimeField(required=False, help_text="From this time (ISO 8601), inclusive.")
    until = serializers.DateTimeField(required=False, help_text="Until this time, exclusive.")
    model = serializers.CharField(required=False, max_length=200)
    group_by = GroupByField(required=False, default=["day", "model"], help_text="Comma-separated: " + ", ".join(GROUPS))

    def validate(self, attrs: dict) -> dict:
        # A query parameter sent empty (?until=) is a mistake, not "no filter": say so.
        blank = {name: "must not be empty" for name in self.fields if self.initial_data.get(name, None) == ""}
        if blank:
            raise serializers.ValidationError(blank)
        return attrs


class AdminUsageQuery(UsageQuery):
    key = serializers.CharField(required=False, max_length=16, help_text="A key's public prefix.")
    team = serializers.CharField(required=False, max_length=200, help_text="A team's name.")
    output = serializers.ChoiceField(required=False, choices=["json", "csv"], default="json")


def _window(data: dict) -> dict:
    return {"since": data.get("since"), "until": data.get("until"), "model_name": data.get("model")}


def csv_response(summary: list[dict]) -> HttpResponse:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(summary)
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="usage-{stamp}.csv"'
    return response


class AdminUsageView(GatewayAPIView):
    permission_classes = [AdminAccess]

    def get(self, request):
        query = AdminUsageQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        team_id = None
        if data.get("team"):
            team = Team.objects.filter(name=data["team"]).first()
            if team is None:
                raise serializers.ValidationError({"team": f"no team is named {data['team']!r}"})
            team_id = team.pk
        rows = usage_rows(**_window(data), api_key_prefix=data.get("key"), team_id=team_id)
        summary = usage_summary(rows=rows, group_by=data["group_by"])
        if data["output"] == "csv":
            return csv_response(summary)
        return Response({"success": True, "group_by": data["group_by"], "data": summary})


def budget_view(entry: dict) -> dict:
    rule, spent, held = entry["rule"], entry["spent"], entry["held"]
    as_amount = (lambda value: usd_text(value)) if rule.unit == "usd" else (lambda value: value)
    return {
        "id": abs(rule.id),
        "owner": "team" if rule.subject.startswith("t") else "key",
        "unit": rule.unit,
        "period": rule.period,
        "window_seconds": rule.window_seconds or None,
        "model": rule.model_name or None,
        "limit": as_amount(rule.limit),
        "spent": as_amount(spent),
        "held": as_amount(held),  # by requests in flight
        "left": as_amount(max(rule.limit - spent - held, 0)),
    }


class OwnUsageView(OpenAIView):
    """A key's own usage and budgets (the inference scope, as every /v1 endpoint)."""

    def get(self, request):
        caller = request.auth
        if not isinstance(caller, Caller) or caller.api_key_id is None:
            raise NotAuthenticated("GET /v1/usage reports one API key's own usage: send that key")
        query = UsageQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        summary = usage_summary(
            rows=usage_rows(**_window(data), api_key_id=caller.api_key_id), group_by=data["group_by"]
        )
        budgets = [budget_view(entry) for entry in budgets_left(api_key_id=caller.api_key_id)]
        return Response({"object": "usage", "group_by": data["group_by"], "data": summary, "budgets": budgets})
