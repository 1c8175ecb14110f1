"""Prices, teams and budgets from the fleet file, the command line and the admin."""

import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from accounts.models import ApiKey
from usage.models import Budget, Price, Team, TeamMember, UsageRecord

pytestmark = pytest.mark.django_db


def run(command: str, *args, stdin: str | None = None, monkeypatch=None) -> str:
    out = io.StringIO()
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    call_command(command, *args, stdout=out)
    return out.getvalue()


def make_key(name: str = "app") -> ApiKey:
    from accounts.services import api_key_create

    return api_key_create(name=name, scopes=["inference"])[0]


def fleet(prefix: str, price: str = "2.5") -> str:
    return f"""
version: 1
models: {{}}
usage:
  prices:
    gpt:
      - {{effective_from: 2026-12-01T00:00:00Z, input_per_million: {price}, output_per_million: 10}}
  teams:
    research:
      keys: [{prefix}]
      budgets:
        - {{period: month, limit_usd: 500, thresholds: [80, 100]}}
  keys:
    {prefix}:
      budgets:
        - {{period: day, limit_tokens: 100000, model: gpt}}
"""


def test_the_fleet_files_usage_section_is_applied_and_a_second_apply_changes_nothing(monkeypatch):
    key = make_key()

    out = run("apply", "-f", "-", stdin=fleet(key.prefix), monkeypatch=monkeypatch)
    again = run("apply", "-f", "-", stdin=fleet(key.prefix), monkeypatch=monkeypatch)

    assert "+ create team research" in out and "+ create price of gpt" in out
    assert "nothing to change" in again
    price = Price.objects.get()
    assert (price.input_per_million, price.effective_from) == (Decimal("2.5"), datetime(2026, 12, 1, tzinfo=UTC))
    team = Team.objects.get(name="research")
    assert TeamMember.objects.get(api_key=key).team == team
    team_budget = Budget.objects.get(team=team)
    assert (team_budget.period, team_budget.limit_usd, team_budget.thresholds) == ("month", Decimal("500"), [80, 100])
    key_budget = Budget.objects.get(api_key=key)
    assert (key_budget.limit_tokens, key_budget.model_name) == (100000, "gpt")


def test_a_price_already_charged_cannot_change_in_the_file(monkeypatch):
    key = make_key()
    run("apply", "-f", "-", stdin=fleet(key.prefix), monkeypatch=monkeypatch)
    price = Price.objects.get()
    UsageRecord.objects.create(
        usage_id="u1",
        settled_at=price.effective_from,
        started_at=price.effective_from,
        model_name="gpt",
        price_id=price.pk,
    )

    with pytest.raises(CommandError, match="<stdin>:7: price of gpt from 2026-12-01T00:00:00\\+00:00 was charged"):
        run("apply", "-f", "-", stdin=fleet(key.prefix, price="3"), monkeypatch=monkeypatch)
    assert Price.objects.get().input_per_million == Decimal("2.5")


def test_an_unknown_key_prefix_is_named_with_its_line_and_nothing_is_written(monkeypatch):
    with pytest.raises(CommandError, match="<stdin>:10: no API key has prefix 'zzzzzzzz'"):
        run("apply", "-f", "-", stdin=fleet("zzzzzzzz"), monkeypatch=monkeypatch)
    assert not Team.objects.exists() and not Price.objects.exists()


def test_create_api_key_gives_the_key_a_team_and_a_budget():
    out = run(
        "create_api_key", "--name", "app", "--scope", "inference", "--team", "research",
        "--budget-tokens", "5000", "--budget-period", "day", "--budget-usd", "2.50",
    )  # fmt: skip

    key = ApiKey.objects.get(prefix=out.strip().splitlines()[-1].split("_")[1])
    assert key.team_membership.team.name == "research"
    budget = Budget.objects.get(api_key=key)
    assert (budget.limit_tokens, budget.limit_usd, budget.period) == (5000, Decimal("2.5"), "day")


def test_create_api_key_refuses_a_rolling_budget_without_its_window_and_makes_no_key():
    with pytest.raises(CommandError, match="window_seconds: a rolling budget needs its window"):
        run(
            "create_api_key",
            "--name",
            "app",
            "--scope",
            "inference",
            "--budget-tokens",
            "5",
            "--budget-period",
            "rolling",
        )
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("page", ["team", "price", "budget", "usagerecord"])
def test_the_admin_lists_and_adds_usage_objects(admin_client, page):
    assert admin_client.get(f"/admin/usage/{page}/").status_code == 200
    assert admin_client.get(f"/admin/usage/{page}/add/").status_code == (403 if page == "usagerecord" else 200)


def test_a_budget_added_in_the_admin_is_checked(admin_client):
    key = make_key()
    response = admin_client.post(
        "/admin/usage/budget/add/",
        {"api_key": key.pk, "period": "day", "model_name": "", "thresholds": "[80, 100]", "enabled": "on"},
    )

    assert response.status_code == 200 and b"set limit_tokens, limit_usd or both" in response.content
    assert not Budget.objects.exists()
