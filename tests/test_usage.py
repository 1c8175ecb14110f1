"""Usage, cost and budgets in process: what is recorded, what is refused, and the counters
themselves over both stores (this process's and Redis)."""

import json
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone

from accounts.models import ApiKey
from tests.conftest import bearer
from tests.fake_model_apis import OpenAIServer
from usage.budget_store import Held, Refused
from usage.budget_store_local import LocalBudgetStore
from usage.catalog import BudgetRule, catalog
from usage.ledger import ledger_writer
from usage.metering import Tokens
from usage.models import Budget, Price, Team, TeamMember, UsageRecord

pytestmark = pytest.mark.django_db

HI = [{"role": "user", "content": "Hi"}]  # 2 characters: estimated as 1 input token
# The fake server reports 5 prompt and 6 completion tokens for every chat answer.
UPSTREAM_TOKENS = 11


def register_openai(api, base_url: str, model_name: str = "gpt") -> None:
    response = api.post(
        "/api/server/register",
        {"model_name": model_name, "kind": "openai", "req_url_template": base_url, "upstream_model": "up-model"},
        format="json",
    )
    assert response.status_code == 200, response.content


@pytest.fixture
def gpt(api, upstream):
    register_openai(api, OpenAIServer().install(upstream))
    register_openai(api, OpenAIServer().install(upstream), model_name="other")
    return upstream


def key_row(key: str) -> ApiKey:
    return ApiKey.objects.get(prefix=key.split("_")[1])


def chat(api, key: str, model: str = "gpt", **body):
    return api.post(
        "/v1/chat/completions", {"model": model, "messages": HI, "max_tokens": 10, **body}, format="json", **bearer(key)
    )


def ledger() -> list[UsageRecord]:
    ledger_writer.flush()
    return list(UsageRecord.objects.order_by("id"))


def test_a_request_is_recorded_with_the_upstreams_tokens_and_its_cost(api, gpt, make_key):
    Price.objects.create(
        model_name="gpt", effective_from=timezone.now() - timedelta(days=1), input_per_million=2, output_per_million=8
    )
    key = make_key("inference")

    assert chat(api, key).status_code == 200

    [row] = ledger()
    assert (row.input_tokens, row.output_tokens, row.estimated) == (5, 6, False)
    assert row.api_key_id == key_row(key).pk and row.model_name == "gpt"
    assert row.cost_usd == Decimal("0.000058")  # 5 x 2 + 6 x 8 USD per million


def test_a_price_change_applies_from_its_effective_time_and_past_cost_stays(api, gpt, make_key):
    now = timezone.now()
    Price.objects.create(model_name="gpt", effective_from=now - timedelta(days=1), input_per_million=1)
    key = make_key("inference")
    assert chat(api, key).status_code == 200
    Price.objects.create(model_name="gpt", effective_from=now + timedelta(seconds=1), input_per_million=100)
    catalog.invalidate()
    time.sleep(1.1)  # the new price's effective time passes

    assert chat(api, key).status_code == 200

    first, second = ledger()
    assert (first.cost_nanos, second.cost_nanos) == (5 * 1000, 5 * 100_000)
    assert first.price_id != second.price_id


def test_a_key_over_its_token_budget_is_refused_before_the_upstream_with_what_is_left(api, gpt, make_key):
    key = make_key("inference")
    Budget.objects.create(api_key=key_row(key), period="day", limit_tokens=2 * UPSTREAM_TOKENS + 5)

    statuses = [chat(api, key).status_code for _ in range(2)]
    refused = chat(api, key)

    assert statuses == [200, 200] and refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "budget_exceeded" and error["type"] == "rate_limit_error"
    assert error["budget"]["left"] == 5 and error["budget"]["unit"] == "tokens" and error["budget"]["period"] == "day"
    assert error["budget"]["resets_at"].endswith("T00:00:00Z")
    assert "resets at" in error["message"]
    assert 1 <= int(refused["Retry-After"]) <= 86400
    assert len(gpt.hits("/v1/chat/completions")) == 2


def test_the_seed_endpoint_refuses_in_its_own_shape(api, upstream, make_key):
    from tests.conftest import SEED_ANSWER, seed_registration

    api.post("/api/server/register", seed_registration(upstream.on("/gen", json=SEED_ANSWER)), format="json")
    key = make_key("inference")
    Budget.objects.create(api_key=key_row(key), period="month", limit_tokens=1)

    refused = api.post(
        "/api/v1/chat/completions", {"model_name": "proxyllm", "input": "hello"}, format="json", **bearer(key)
    )

    assert refused.status_code == 429
    body = refused.json()
    assert body["success"] is False and body["code"] == "budget_exceeded"
    assert body["budget"]["left"] == 1 and body["budget"]["resets_at"].endswith("01T00:00:00Z")


def test_a_money_budget_counts_cost_at_the_models_price(api, gpt, make_key):
    Price.objects.create(model_name="gpt", effective_from=timezone.now() - timedelta(days=1), input_per_million=1000)
    key = make_key("inference")
    # One request holds 1 estimated input token (0.001 USD) and 10 output tokens (free).
    Budget.objects.create(api_key=key_row(key), period="month", limit_usd=Decimal("0.0105"))

    statuses = [chat(api, key).status_code for _ in range(3)]

    assert statuses == [200, 200, 429]  # each costs 5 x 0.001 USD; the third would need more than is left


def test_a_team_budget_counts_every_key_of_the_team(api, gpt, make_key):
    team = Team.objects.create(name="research")
    first, second = make_key("inference"), make_key("inference")
    for key in (first, second):
        TeamMember.objects.create(api_key=key_row(key), team=team)
    Budget.objects.create(team=team, period="rolling", window_seconds=3600, limit_tokens=2 * UPSTREAM_TOKENS)

    statuses = [chat(api, first).status_code, chat(api, second).status_code, chat(api, first).status_code]

    assert statuses == [200, 200, 429]
    assert {row.team_id for row in ledger()} == {team.pk}


def test_a_per_model_budget_counts_only_that_model(api, gpt, make_key):
    key = make_key("inference")
    Budget.objects.create(api_key=key_row(key), model_name="gpt", period="day", limit_tokens=UPSTREAM_TOKENS)

    assert [chat(api, key).status_code, chat(api, key).status_code] == [200, 429]
    assert [chat(api, key, model="other").status_code for _ in range(3)] == [200, 200, 200]


def test_a_stream_cut_midway_is_billed_for_the_relayed_tokens_only(api, upstream, make_key):
    register_openai(api, OpenAIServer(cut_after=3).install(upstream))
    key = make_key("inference")

    response = chat(api, key, stream=True)
    relayed = b"".join(response.streaming_content)

    assert b"stream_interrupted" in relayed
    [row] = ledger()
    # "" + "Hello" + " from": 10 characters relayed, 3 tokens by the estimate; never the full answer.
    assert (row.output_tokens, row.estimated) == (3, True)


def test_a_whole_stream_uses_the_usage_chunk_when_the_upstream_sends_one(api, upstream, make_key):
    from tests.fake_upstream import Reply

    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "up-model"}
    events = [
        {**chunk, "choices": [{"index": 0, "delta": {"content": "Hello there"}, "finish_reason": "stop"}]},
        {**chunk, "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}},
    ]
    body = [f"data: {json.dumps(event)}\n\n".encode() for event in events] + [b"data: [DONE]\n\n"]
    upstream.on("/v1/chat/completions", Reply(stream=body, headers={"Content-Type": "text/event-stream"}))
    register_openai(api, upstream.url("/v1"))
    key = make_key("inference")

    response = chat(api, key, stream=True, stream_options={"include_usage": True})
    b"".join(response.streaming_content)

    [row] = ledger()
    assert (row.input_tokens, row.output_tokens, row.estimated) == (9, 2, False)


def test_a_job_is_charged_once_per_image_at_its_price(db):
    from usage.services import record_job_usage

    Price.objects.create(model_name="painter", effective_from=timezone.now() - timedelta(days=1), per_image="0.04")

    first = record_job_usage(api_key_id=None, model_name="painter", job_id="job-1", images=3)
    ledger_writer.add(first)  # queued again, as a retried job would: still one row

    [row] = ledger()
    assert (row.images, row.kind, row.cost_usd) == (3, "image", Decimal("0.12"))


# --- the counters, over both stores --------------------------------------------------------


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.redis)])
def store(request):
    if request.param == "local":
        return LocalBudgetStore()
    from usage.budget_store_redis import RedisBudgetStore

    return RedisBudgetStore(url=settings.REDIS_URL, prefix=settings.MMM_USAGE_PREFIX)


def rule(limit: int = 100, **fields) -> BudgetRule:
    values = {"id": 7, "subject": "k1", "model_name": "", "period": "day", "window_seconds": 0, "unit": "tokens"}
    return BudgetRule(**{**values, "limit": limit, "thresholds": (), **fields})


def test_a_duplicate_settle_or_reserve_changes_nothing(store):
    budget = rule(100)
    assert isinstance(store.reserve(subject="k1", usage_id="a", charges=[(budget, 40)], lease_seconds=60), Held)
    store.reserve(subject="k1", usage_id="a", charges=[(budget, 40)], lease_seconds=60)  # a retry
    first = store.settle(subject="k1", usage_id="a", charges=[(budget, 30)])
    again = store.settle(subject="k1", usage_id="a", charges=[(budget, 30)])

    assert (first.duplicate, again.duplicate) == (False, True)
    assert store.spent(subject="k1", rules=[budget]) == {7: (30, 0)}
    # Nothing is held any more: 70 fit, 71 do not.
    assert isinstance(store.reserve(subject="k1", usage_id="b", charges=[(budget, 70)], lease_seconds=60), Held)
    refused = store.reserve(subject="k1", usage_id="c", charges=[(budget, 1)], lease_seconds=60)
    assert isinstance(refused, Refused) and refused.left == 0


def test_settling_many_at_once_charges_each_once_whatever_the_batch_holds(store):
    key_budget, team_budget = rule(1000), rule(1000, id=8, subject="t1")
    for usage_id in ("a", "b"):
        store.reserve(subject="k1", usage_id=usage_id, charges=[(key_budget, 100)], lease_seconds=60)
    store.reserve(subject="t1", usage_id="a", charges=[(team_budget, 100)], lease_seconds=60)

    settled = store.settle_many(
        [
            ("k1", "a", [(key_budget, 10)]),
            ("k1", "b", [(key_budget, 20)]),
            ("k1", "a", [(key_budget, 10)]),  # the same settle twice in one batch
            ("t1", "a", [(team_budget, 10)]),
        ]
    )

    assert [result.duplicate for result in settled] == [False, False, True, False]
    assert [result.spent.get(7) for result in settled[:2]] == [10, 30]
    assert store.spent(subject="k1", rules=[key_budget]) == {7: (30, 0)}  # and nothing still held
    assert store.spent(subject="t1", rules=[team_budget]) == {8: (10, 0)}


def test_a_reservation_whose_process_died_is_released_when_its_lease_expires(store):
    budget = rule(10)
    store.reserve(subject="k1", usage_id="dead", charges=[(budget, 10)], lease_seconds=0.2)
    assert isinstance(store.reserve(subject="k1", usage_id="next", charges=[(budget, 1)], lease_seconds=60), Refused)

    time.sleep(0.5)

    assert isinstance(store.reserve(subject="k1", usage_id="next", charges=[(budget, 10)], lease_seconds=60), Held)


def test_reconciling_twice_sets_the_ledgers_figure_and_inflates_nothing(store):
    budget = rule(1000)
    store.settle(subject="k1", usage_id="old", charges=[(budget, 100)])
    cutoff = store.now()
    store.settle(subject="k1", usage_id="new", charges=[(budget, 7)])
    label = f"d{int(store.now() // 86400)}"

    for _ in range(3):  # every host after a restart, or the same one again
        store.reconcile(subject="k1", cutoff=cutoff, counters=[(budget, label, 100)])

    assert store.spent(subject="k1", rules=[budget]) == {7: (107, 0)}


def test_a_rolling_window_forgets_what_left_it(store):
    budget = rule(10, period="rolling", window_seconds=3600)
    store.settle(subject="k1", usage_id="a", charges=[(budget, 10)])
    refused = store.reserve(subject="k1", usage_id="b", charges=[(budget, 1)], lease_seconds=60)

    assert isinstance(refused, Refused) and refused.left == 0
    assert store.now() < refused.resets_at <= store.now() + 3600 + 60


def test_a_threshold_is_crossed_by_exactly_one_settle(store):
    from usage.thresholds import crossed

    budget = rule(100, thresholds=(80, 100))
    seen = []
    for index in range(10):
        settled = store.settle(subject="k1", usage_id=f"r{index}", charges=[(budget, 15)])
        after = settled.spent[7]
        seen += crossed(budget, before=after - 15, after=after)

    assert seen == [80, 100]


# --- what operators and keys read ----------------------------------------------------------


def test_a_key_reads_its_own_usage_and_budgets_on_v1_usage(api, gpt, make_key):
    key, other = make_key("inference"), make_key("inference")
    Budget.objects.create(api_key=key_row(key), period="day", limit_tokens=100)
    chat(api, key)
    chat(api, other)
    ledger()

    own = api.get("/v1/usage", {"group_by": "model"}, **bearer(key))

    assert own.status_code == 200, own.content
    assert own.json()["data"] == [
        {
            "model": "gpt",
            "requests": 1,
            "input_tokens": 5,
            "output_tokens": 6,
            "cached_tokens": 0,
            "total_tokens": 11,
            "images": 0,
            "video_seconds": "0",
            "cost_usd": "0.000000000",
            "estimated_requests": 0,
        }
    ]
    [budget] = own.json()["budgets"]
    assert (budget["limit"], budget["spent"], budget["left"], budget["unit"]) == (100, 11, 89, "tokens")


def test_v1_usage_without_a_key_says_it_needs_one(api):
    response = api.get("/v1/usage")

    assert response.status_code == 401
    assert "send that key" in response.json()["error"]["message"]


def test_operators_filter_usage_by_team_and_export_it_as_csv(api, gpt, make_key, require_auth):
    admin = make_key("admin")
    team = Team.objects.create(name="research")
    member, outsider = make_key("inference"), make_key("inference")
    TeamMember.objects.create(api_key=key_row(member), team=team)
    chat(api, member)
    chat(api, outsider)
    ledger()

    by_team = api.get("/api/usage", {"team": "research", "group_by": "team,key"}, **bearer(admin))
    exported = api.get("/api/usage", {"group_by": "model", "output": "csv"}, **bearer(admin))
    unknown = api.get("/api/usage", {"group_by": "colour"}, **bearer(admin))
    not_admin = api.get("/api/usage", **bearer(member))

    assert by_team.status_code == 200, by_team.content
    [row] = by_team.json()["data"]
    assert (row["team"], row["key"], row["total_tokens"]) == ("research", key_row(member).prefix, 11)
    assert exported["Content-Type"].startswith("text/csv")
    lines = exported.content.decode().splitlines()
    assert lines[0].startswith("day,hour,key,team,model,requests") and lines[1].split(",")[4:6] == ["gpt", "2"]
    assert unknown.status_code == 400 and "colour" in unknown.json()["msg"]
    blank = api.get("/api/usage", {"until": ""}, **bearer(admin))
    assert blank.status_code == 400 and blank.json()["errors"] == {"until": ["must not be empty"]}
    assert not_admin.status_code == 403


def test_the_usage_dashboard_charts_tokens_and_cost_per_model_and_lists_spenders(admin_client, api, gpt, make_key):
    Price.objects.create(model_name="gpt", effective_from=timezone.now() - timedelta(days=1), input_per_million=1000)
    team = Team.objects.create(name="research<b>")
    key = make_key("inference")
    TeamMember.objects.create(api_key=key_row(key), team=team)
    chat(api, key)
    ledger()

    for window in ("day", "month"):
        page = admin_client.get("/admin/dashboard/usage/", {"window": window})

        assert page.status_code == 200
        html = page.content.decode()
        assert html.count('<svg class="chart"') == 2 and 'aria-label="Cost in USD"' in html
        assert "research&lt;b&gt;" in html and "research<b>" not in html  # names are escaped
        assert key_row(key).prefix in html and "0.005000000" in html
        assert "output=csv" in html


def test_prometheus_counts_tokens_and_cost_by_model(api, gpt, make_key):
    from prometheus_client import REGISTRY

    Price.objects.create(model_name="gpt", effective_from=timezone.now() - timedelta(days=1), output_per_million=1000)
    before = (
        REGISTRY.get_sample_value(
            "mmm_usage_tokens_total", {"model": "gpt", "direction": "output", "estimated": "false"}
        )
        or 0
    )
    cost_before = REGISTRY.get_sample_value("mmm_usage_cost_usd_total", {"model": "gpt"}) or 0

    chat(api, make_key("inference"))

    after = REGISTRY.get_sample_value(
        "mmm_usage_tokens_total", {"model": "gpt", "direction": "output", "estimated": "false"}
    )
    assert after - before == 6
    assert REGISTRY.get_sample_value("mmm_usage_cost_usd_total", {"model": "gpt"}) - cost_before == pytest.approx(0.006)


def test_a_team_budget_crossing_80_and_100_percent_sends_one_signed_webhook_each(api, gpt, make_key):
    from standardwebhooks import Webhook

    from tests.fake_upstream import FakeUpstream
    from webhooks.delivery import deliver_due
    from webhooks.services import webhook_endpoint_create

    receiver = FakeUpstream().start()
    receiver.on("/hook", status=204, text="")
    try:
        team = Team.objects.create(name="research")
        key = make_key("inference")
        TeamMember.objects.create(api_key=key_row(key), team=team)
        _, secret = webhook_endpoint_create(api_key=key_row(key), url=receiver.url("/hook"))
        # 80 % is 88 tokens (the 8th answer), 100 % is 110 (the 10th).
        budget = Budget.objects.create(
            team=team, period="month", limit_tokens=10 * UPSTREAM_TOKENS, thresholds=[80, 100]
        )

        statuses = [chat(api, key).status_code for _ in range(11)]
        assert deliver_due(limit=10) == 2

        assert statuses == [200] * 10 + [429]
        events = [Webhook(secret).verify(seen.body, seen.headers) for seen in receiver.hits("/hook")]
        assert sorted(event["data"]["threshold_percent"] for event in events) == [80, 100]
        assert {event["type"] for event in events} == {"budget.threshold"}
        eighty = next(event["data"] for event in events if event["data"]["threshold_percent"] == 80)
        assert (eighty["budget_id"], eighty["owner"], eighty["spent"], eighty["limit"]) == (budget.pk, "team", 88, 110)
    finally:
        receiver.stop()


def test_while_redis_is_away_budgets_are_checked_by_this_process_from_the_ledger(db):
    from tests.gateway_process import free_port
    from usage.budget_store_redis import RedisBudgetStore
    from usage.services import usage_reserve, usage_settle

    key = ApiKey.objects.create(name="app", prefix="awaykey1", secret_hash="x", scopes=["inference"])
    Budget.objects.create(api_key=key, period="day", limit_tokens=30)
    UsageRecord.objects.create(
        usage_id="before", settled_at=timezone.now(), started_at=timezone.now(), api_key_id=key.pk,
        model_name="gpt", input_tokens=10, output_tokens=10,
    )  # fmt: skip
    away = RedisBudgetStore(url=f"redis://127.0.0.1:{free_port()}/0", prefix="mmm:away")
    import usage.budget_store as budget_store_module

    budget_store_module._store = away
    body = {"messages": HI, "max_tokens": 4}  # holds 1 + 4 tokens

    first = usage_reserve(api_key_id=key.pk, model_name="gpt", body=body)
    usage_settle(reservation=first, tokens=Tokens(input=1, output=4), status=200)
    second = usage_reserve(api_key_id=key.pk, model_name="gpt", body=body)
    usage_settle(reservation=second, tokens=Tokens(input=1, output=4), status=200)

    from usage.exceptions import BudgetExceeded

    with pytest.raises(BudgetExceeded):  # 20 in the ledger + 10 settled here: the 30 are spent
        usage_reserve(api_key_id=key.pk, model_name="gpt", body=body)
    assert away.fallback.spent(
        subject=f"k{key.pk}", rules=catalog.rules_for(api_key_id=key.pk, model_name="gpt")[1]
    ) == {Budget.objects.get().pk: (30, 0)}


def test_usage_settled_behind_the_response_is_charged_once_and_holds_nothing(api, gpt, make_key, settings):
    from tests.waiting import wait_until
    from usage.services import budgets_left
    from usage.settlement import settle_writer

    settings.MMM_USAGE_SETTLE_BEHIND = True
    key = make_key("inference")
    Budget.objects.create(api_key=key_row(key), period="day", limit_tokens=10_000, thresholds=[])

    for _ in range(5):
        assert chat(api, key).status_code == 200
    # The flusher (a thread here, a greenlet under gunicorn) settles them, then queues their rows.
    wait_until(lambda: len(ledger_writer) == 5, timeout=30, what="the five settlements to reach the ledger's queue")

    assert len(settle_writer) == 0
    assert sum(row.total_tokens for row in ledger()) == 5 * UPSTREAM_TOKENS
    [figures] = budgets_left(api_key_id=key_row(key).pk)
    assert (figures["spent"], figures["held"]) == (5 * UPSTREAM_TOKENS, 0)
