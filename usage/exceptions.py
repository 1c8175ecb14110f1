from datetime import UTC, datetime

from rest_framework import status

from mmm.api_errors import ApiError
from usage.catalog import BudgetRule
from usage.models import nanos_to_usd, usd_text


class BudgetExceeded(ApiError):
    """A budget has nothing left for this request: refused before any upstream call."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "budget_exceeded"

    def __init__(self, *, rule: BudgetRule, left: int, resets_at: float, now: float):
        resets = datetime.fromtimestamp(resets_at, UTC).isoformat().replace("+00:00", "Z")
        if rule.unit == "usd":
            left_text, limit_text = f"{nanos_to_usd(left)} USD", f"{nanos_to_usd(rule.limit)} USD"
        else:
            left_text, limit_text = f"{left} tokens", f"{rule.limit} tokens"
        super().__init__(
            f"{rule.describe()} is spent: {left_text} left of {limit_text}, not enough for this request "
            f"(max_tokens counts); it resets at {resets}",
            budget={
                "id": abs(rule.id),
                "owner": "team" if rule.subject.startswith("t") else "key",
                "owner_id": int(rule.subject[1:]),
                "unit": rule.unit,
                "period": rule.period,
                "window_seconds": rule.window_seconds or None,
                "model": rule.model_name or None,
                "limit": usd_text(rule.limit) if rule.unit == "usd" else rule.limit,
                "left": usd_text(left) if rule.unit == "usd" else left,
                "resets_at": resets,
            },
        )
        self.wait = max(1.0, resets_at - now)
