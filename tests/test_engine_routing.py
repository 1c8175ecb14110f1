"""Routing on what the engines say: the scraper against fake engines' real /metrics pages, the
engine_aware and prefix_aware strategies, their fallbacks, and what the workers list shows."""

import io
import json
import time

import pytest
from django.core.management import call_command

from inference.engine_signals import EngineMetricsUnreadable, parse_engine_metrics
from inference.routing_state import routing_state
from registry.engine_scrape import EngineFleet, engines_scrape
from tests.conftest import seed_registration
from tests.fake_engines import EngineLoad, FakeEngine, sglang_metrics, tgi_metrics, vllm_metrics
from tests.fake_upstream import refused_url

pytestmark = pytest.mark.django_db

SYSTEM_A = "You are a careful assistant for the accounting team. " * 30  # ~1,600 characters
SYSTEM_B = "You answer questions about the shipping schedule, briefly. " * 30


@pytest.fixture
def engines():
    made: list[FakeEngine] = []

    def make(count: int = 2, engine: str = "vllm", **load) -> list[FakeEngine]:
        new = [FakeEngine(engine, **load) for _ in range(count)]
        made.extend(new)
        return new

    yield make
    for engine in made:
        engine.stop()


def register(api, engine: FakeEngine, *, model_name: str = "llama", **fields) -> None:
    document = seed_registration(engine.url, model_name=model_name, engine=engine.engine, **fields)
    response = api.post("/api/server/register", document, format="json")
    assert response.status_code == 200, response.json()


def set_strategy(api, strategy: str, model_name: str = "llama") -> None:
    response = api.post("/api/server/policy", {"model_name": model_name, "strategy": strategy}, format="json")
    assert response.status_code == 200, response.json()


def scrape():
    # A tiny interval: each worker's claim ends at once, so every call reads every engine.
    return engines_scrape(fleet=EngineFleet.load(), state=routing_state(), interval=0.001)


def test_the_fleet_holds_the_engine_workers_and_the_ids_of_their_models_workers(api):
    from registry.models import Worker

    def add(model_name: str, url: str, **fields) -> int:
        register_at(api, url, model_name=model_name, **fields)
        return Worker.objects.get(model_name=model_name, req_url_template=url).pk

    first = add("llama", "http://127.0.0.1:9/a", engine="vllm")
    plain = add("llama", "http://127.0.0.1:9/b")  # no engine, but counted among llama's workers
    second = add("llama", "http://127.0.0.1:9/c", engine="sglang")
    off = add("llama", "http://127.0.0.1:9/d", engine="vllm")
    Worker.objects.filter(pk=off).update(enabled=False)  # gets no traffic: neither read nor counted
    add("api-model", "http://127.0.0.1:9/e")  # a model without an engine: not in the fleet at all
    fleet = EngineFleet.load()
    assert [worker.pk for worker in fleet.workers] == [first, second]
    assert fleet.model_worker_ids == {"llama": [first, plain, second]}
    assert EngineFleet.load(model_name="api-model").workers == ()


def register_at(api, url: str, **fields) -> None:
    response = api.post("/api/server/register", seed_registration(url, **fields), format="json")
    assert response.status_code == 200, response.json()


def complete(api, prompt: str = "hi", model_name: str = "llama"):
    response = api.post("/api/v1/chat/completions", {"model_name": model_name, "input": prompt}, format="json")
    assert response.status_code == 200, response.json()
    return response


def chat(api, messages, model_name: str = "llama", fields: dict | None = None, **extra):
    body = {"model": model_name, "messages": messages, **(fields or {})}
    response = api.post("/v1/chat/completions", body, format="json", **extra)
    assert response.status_code == 200, response.content
    return response


def engine_states(api) -> dict[str, dict]:
    rows = api.get("/api/server/workers").json()["data"]
    return {row["req_url_template"]: row for row in rows}


# --- Reading the engines -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("engine", "cache"),
    [("vllm", 0.42), ("sglang", 0.42), ("tgi", None)],
)
def test_the_scraper_reads_each_engines_own_metrics_page(api, engines, engine, cache):
    (fake,) = engines(1, engine, waiting=7, running=3, kv_cache=0.42)
    register(api, fake)
    out = io.StringIO()

    with pytest.raises(SystemExit) as exited:
        call_command("scrape_engines", "--json", stdout=out)

    assert exited.value.code == 0
    assert json.loads(out.getvalue())["ok"] == 1
    state = engine_states(api)[fake.url]["engine_state"]
    assert state["fresh"] is True and state["scrape_error"] == ""
    assert (state["queue"], state["running"], state["kv_cache_usage"]) == (7, 3, cache)
    assert engine_states(api)[fake.url]["metrics_url"] == fake.server.url("/metrics")


def test_vllms_older_cache_metric_name_and_its_adapters_are_read():
    page = vllm_metrics(
        EngineLoad(waiting=1, running=2, kv_cache=0.9, adapters=("sql-lora", "chat-lora")), old_cache_name=True
    )

    reading = parse_engine_metrics(engine="vllm", text=page)

    assert reading.kv_cache_usage == 0.9
    # The latest lora_requests_info series (by its timestamp value) says what is loaded now.
    assert reading.adapters == ("sql-lora", "chat-lora")
    assert reading.cache_tokens == 2048 * 16


def test_sglang_and_tgi_pages_give_their_queue_and_batch():
    assert parse_engine_metrics(engine="sglang", text=sglang_metrics(EngineLoad(waiting=4, running=9))).waiting == 4
    tgi = parse_engine_metrics(engine="tgi", text=tgi_metrics(EngineLoad(waiting=2, running=5)))
    assert (tgi.waiting, tgi.running, tgi.kv_cache_usage) == (2, 5, None)


def test_a_page_of_another_engine_is_refused_by_name():
    with pytest.raises(EngineMetricsUnreadable, match="sglang:num_queue_reqs"):
        parse_engine_metrics(engine="sglang", text=vllm_metrics(EngineLoad()))


def test_a_failed_scrape_shows_on_the_worker_in_metrics_and_counts_against_it(api, engines):
    (fake,) = engines(1)
    register(api, fake, metrics_url=refused_url("/metrics"))

    (result,) = scrape()

    assert not result.ok
    row = engine_states(api)[fake.url]
    assert row["engine_state"]["scrape_failures"] == 1
    assert "metrics URL" in row["engine_state"]["scrape_error"]
    assert row["engine_state"]["fresh"] is False
    # A refused connection is likely the engine itself gone: passive health hears of it.
    assert row["traffic"]["consecutive_failures"] == 1
    metrics = api.get("/metrics").content.decode()
    worker_id = row["id"]
    assert f'mmm_worker_engine_scrape_failures{{model="llama",worker="{worker_id}"}} 1.0' in metrics
    assert f'mmm_worker_engine_signals_fresh{{model="llama",worker="{worker_id}"}} 0.0' in metrics


def test_metrics_turned_off_is_an_error_on_the_worker_but_not_a_health_failure(api, engines):
    (fake,) = engines(1)
    fake.metrics_status = 404
    register(api, fake)

    (result,) = scrape()

    assert result.error == "metrics URL answered HTTP 404"
    assert engine_states(api)[fake.url]["traffic"]["consecutive_failures"] == 0


def test_a_good_scrape_after_failures_clears_the_error(api, engines):
    (fake,) = engines(1, waiting=2)
    fake.metrics_status = 500
    register(api, fake)
    scrape()
    fake.metrics_status = 200

    scrape()

    state = engine_states(api)[fake.url]["engine_state"]
    assert (state["scrape_error"], state["scrape_failures"], state["queue"]) == ("", 0, 2)


def test_one_scraper_of_several_reads_each_engine_per_interval(api, engines):
    (fake,) = engines(1)
    register(api, fake)
    fleet, state = EngineFleet.load(), routing_state()

    first = engines_scrape(fleet=fleet, state=state, interval=60)
    second = engines_scrape(fleet=fleet, state=state, interval=60)  # another scraper, same moment

    assert len(first) == 1 and second == []
    assert len(fake.server.hits("/metrics")) == 1


# --- engine_aware ------------------------------------------------------------------------


def test_engine_aware_sends_nothing_to_an_engine_whose_queue_others_filled(api, engines):
    busy, *idle = engines(3)
    busy.load.waiting = 40  # requests from clients that do not pass through this gateway
    for fake in (busy, *idle):
        register(api, fake)
    set_strategy(api, "engine_aware")
    scrape()

    for n in range(12):
        complete(api, f"question {n}")

    assert busy.answered == 0
    assert [fake.answered for fake in idle] == [6, 6]


def test_engine_aware_shares_idle_engines_between_scrapes(api, engines):
    pair = engines(2)
    for fake in pair:
        register(api, fake)
    set_strategy(api, "engine_aware")
    scrape()  # both idle; no scrape again during the requests

    for n in range(10):
        complete(api, f"question {n}")

    assert sorted(fake.answered for fake in pair) == [5, 5]


def test_stale_or_missing_signals_fall_back_to_least_loaded(api, engines, settings):
    busy, idle = engines(2)
    busy.load.waiting = 40
    never_scraped = engines(1)[0]
    for fake in (busy, idle):
        register(api, fake)
    set_strategy(api, "engine_aware")
    settings.MMM_ENGINE_SIGNALS_STALE_SECONDS = 0.1
    scrape()
    time.sleep(0.2)  # the signals grow stale; no timing is asserted

    for n in range(6):
        complete(api, f"question {n}")

    # least_loaded takes no notice of the queue it can no longer trust.
    assert busy.answered > 0 and idle.answered > 0
    register(api, never_scraped)
    settings.MMM_ENGINE_SIGNALS_STALE_SECONDS = 60
    for n in range(6):
        complete(api, f"again {n}")  # one worker was never read: least_loaded for all, no error


def test_a_request_for_an_adapter_prefers_the_engines_that_have_it_loaded(api, engines):
    plain, *with_adapter = engines(3)
    for fake in with_adapter:
        fake.load.adapters = ("sql-lora",)
    for fake in (plain, *with_adapter):
        register(api, fake, model_name="sql", upstream_model="sql-lora")
    set_strategy(api, "engine_aware", model_name="sql")
    scrape()

    for n in range(6):
        complete(api, f"select {n}", model_name="sql")

    assert plain.answered == 0
    assert sum(fake.answered for fake in with_adapter) == 6


# --- prefix_aware ------------------------------------------------------------------------


def holder(fakes) -> FakeEngine:
    (found,) = [fake for fake in fakes if fake.answered]
    return found


def test_prompts_that_share_a_prefix_go_to_the_same_worker(api, engines):
    fakes = engines(3)
    for fake in fakes:
        register(api, fake)
    set_strategy(api, "prefix_aware")
    scrape()

    for n in range(5):
        complete(api, f"{SYSTEM_A}\nuser: question {n}")

    assert sorted(fake.answered for fake in fakes) == [0, 0, 5]
    first = holder(fakes)
    complete(api, f"{SYSTEM_B}\nuser: another")  # a new prefix: the engine_aware choice
    assert first.answered == 5


def test_the_load_gate_sends_a_matching_prompt_elsewhere_when_its_worker_is_overloaded(api, engines, settings):
    fakes = engines(3)
    for fake in fakes:
        register(api, fake)
    set_strategy(api, "prefix_aware")
    settings.MMM_PREFIX_LOAD_GATE = 8
    scrape()
    complete(api, f"{SYSTEM_A}\nuser: first")
    first = holder(fakes)

    first.load.waiting = 20  # more than 8 above the others
    scrape()
    complete(api, f"{SYSTEM_A}\nuser: second")

    assert first.answered == 1
    assert sum(fake.answered for fake in fakes) == 2


def test_a_session_id_keeps_a_conversation_on_one_worker(api, engines):
    fakes = engines(3)
    for fake in fakes:
        register(api, fake)
    set_strategy(api, "prefix_aware")
    scrape()

    for n in range(4):  # short, unrelated turns: no prefix to match, only the session
        chat(api, [{"role": "user", "content": f"turn {n}"}], HTTP_X_SESSION_ID="conversation-1")

    assert sorted(fake.answered for fake in fakes) == [0, 0, 4]


def test_the_openai_user_field_pins_like_a_session(api, engines):
    fakes = engines(3)
    for fake in fakes:
        register(api, fake)
    set_strategy(api, "prefix_aware")

    for n in range(4):  # no engine signals at all: the tables still pin
        chat(api, [{"role": "user", "content": f"turn {n}"}], fields={"user": "alice"})

    assert sorted(fake.answered for fake in fakes) == [0, 0, 4]


def test_a_preferred_worker_that_is_down_never_fails_the_request(api, engines):
    fakes = engines(3)
    for fake in fakes:
        register(api, fake)
    set_strategy(api, "prefix_aware")
    complete(api, f"{SYSTEM_A}\nuser: first")
    gone = holder(fakes)
    gone.server.on("/gen", status=503, json={"error": "engine restarting"})

    complete(api, f"{SYSTEM_A}\nuser: second")  # the retry goes to another worker

    assert sum(fake.answered for fake in fakes if fake is not gone) == 1


def test_a_strategy_whose_state_fails_serves_the_request_as_least_loaded(api, engines, monkeypatch):
    fakes = engines(2)
    for fake in fakes:
        register(api, fake)
    set_strategy(api, "prefix_aware")

    def broken(**_):
        raise RuntimeError("prefix table unreadable")

    monkeypatch.setattr(routing_state(), "prefix_match", broken)

    complete(api, f"{SYSTEM_A}\nuser: first")

    assert sum(fake.answered for fake in fakes) == 1


def test_the_policy_api_and_the_workers_list_know_the_new_fields(api, engines):
    (fake,) = engines(1, engine="sglang")
    register(api, fake, metrics_url=fake.server.url("/metrics?key=s3cret"))

    row = engine_states(api)[fake.url]

    assert row["engine"] == "sglang"
    assert "s3cret" not in row["metrics_url"]
    assert row["engine_state"]["scraped"] is False and row["engine_state"]["scrape_error"] == "not scraped yet"
    response = api.post("/api/server/policy", {"model_name": "llama", "strategy": "wrong"}, format="json")
    assert response.status_code == 400
    assert "strategy" in response.json()["msg"] or "strategy" in json.dumps(response.json())


def test_a_worker_without_an_engine_shows_no_engine_state(api, upstream):
    response = api.post("/api/server/register", seed_registration(upstream.url("/gen")), format="json")
    assert response.status_code == 200
    (row,) = api.get("/api/server/workers").json()["data"]
    assert (row["engine"], row["metrics_url"], row["engine_state"]) == ("", "", None)


def test_an_unknown_engine_is_refused_by_field(api):
    response = api.post(
        "/api/server/register", seed_registration("http://127.0.0.1:9/gen", engine="ollama"), format="json"
    )
    assert response.status_code == 400
    assert "engine" in json.dumps(response.json())


def test_the_admin_shows_an_engines_queue_cache_and_failed_reads(admin_client, api, engines):
    good, bad = engines(2, waiting=5, running=2, kv_cache=0.25)
    register(api, good)
    register(api, bad, metrics_url=refused_url("/metrics"))
    scrape()

    pages = {
        fake: admin_client.get(f"/admin/registry/worker/{engine_states(api)[fake.url]['id']}/change/").content.decode()
        for fake in (good, bad)
    }

    assert "5 queued, 2 running, KV cache 25%" in pages[good]
    assert "last 1 read(s) failed: metrics URL" in pages[bad]
    response = admin_client.post(
        "/admin/registry/routingpolicy/add/", {"model_name": "llama", "strategy": "prefix_aware", "fallbacks": "[]"}
    )
    assert response.status_code == 302
    set_strategy(api, "engine_aware")  # and the API changes it


def test_a_failed_scrape_never_shows_the_metrics_urls_key(api, engines):
    (fake,) = engines(1)
    fake.server.on("/metrics", status=401, text="bad key")
    register(api, fake, metrics_url=fake.server.url("/metrics?key=mk-0123456789abcdef"))

    (result,) = scrape()

    assert result.error == "metrics URL answered HTTP 401"
    listed = json.dumps(api.get("/api/server/workers").json())
    assert "mk-0123456789abcdef" not in listed and "mk-0123456789abcdef" not in api.get("/metrics").content.decode()
