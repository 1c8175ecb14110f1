"""Ejection, retries and their budget, cooldowns, capacity caps, fallbacks and heartbeats,
against real upstream servers on loopback."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from inference.routing import routing_table
from inference.routing_state import routing_state
from inference.services import completion_create
from mmm.api_errors import ApiError
from registry.models import RoutingPolicy, Worker
from tests.conftest import SEED_ANSWER, seed_registration
from tests.fake_upstream import Reply
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db


def register(api, url, **fields):
    response = api.post("/api/server/register", seed_registration(url, **fields), format="json")
    assert response.status_code == 200, response.json()


def complete(api, model_name="proxyllm"):
    return api.post("/api/v1/chat/completions", {"model_name": model_name, "input": "hi"}, format="json")


def traffic_of(api, url):
    workers = api.get("/api/server/workers").json()["data"]
    return next(worker for worker in workers if worker["req_url_template"] == url)["traffic"]


def set_policy(api, **fields):
    response = api.post("/api/server/policy", {"model_name": "proxyllm", **fields}, format="json")
    assert response.status_code == 200, response.json()
    return response.json()["data"]


def test_one_failing_worker_of_three_costs_no_client_errors_and_only_its_trials(api, upstream, settings):
    settings.MMM_EJECT_BASE_SECONDS = 0.2  # short ejections, so half-open trials happen in the test
    settings.MMM_EJECT_MAX_SECONDS = 0.5
    bad = upstream.on("/bad", status=500, json={"error": "oom"})
    register(api, bad)
    register(api, upstream.on("/good1", json=SEED_ANSWER))
    register(api, upstream.on("/good2", json=SEED_ANSWER))
    # Round robin sends the bad worker every third request until it is ejected (least_loaded may
    # not pick it three times in a short test once one slow failure raised its latency).
    set_policy(api, strategy="round_robin")

    statuses = [complete(api).status_code for _ in range(1000)]

    assert statuses == [200] * 1000
    ejections = traffic_of(api, bad)["ejections"]
    assert ejections >= 1
    # Three failures in a row eject it; after that it only gets the one trial request at the end
    # of each ejection, and each failed trial ejects it again.
    assert len(upstream.hits("/bad")) == 3 + (ejections - 1)


def test_every_worker_failing_stays_within_the_retry_budget(api, upstream, settings):
    settings.MMM_RETRY_BUDGET_RATIO = 0.2
    settings.MMM_RETRY_BUDGET_MIN = 3
    settings.MMM_RETRY_BUDGET_WINDOW_SECONDS = 600
    settings.MMM_ROUTING_REFRESH_SECONDS = 600  # the threads below use the table loaded here
    for name in ("a", "b", "c"):
        register(api, upstream.on(f"/{name}", status=503, json={}, delay=0.3))
    requests_sent = 60
    assert routing_table.workers_for("proxyllm")

    def one_request(_):
        try:
            completion_create(model_name="proxyllm", prompt="hi")
        except ApiError as exc:
            return exc.status_code
        return 200

    with ThreadPoolExecutor(requests_sent) as pool:
        statuses = list(pool.map(one_request, range(requests_sent)))

    assert statuses == [502] * requests_sent
    calls = len(upstream.seen)
    # Without a budget: 3 attempts each, 180 calls. With it: 20% of the requests, plus retries
    # admitted while fewer than 3 ran, each running at least 0.3 s of a run under 1 s.
    assert calls <= requests_sent + 0.2 * requests_sent + 3 * 3, calls


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_an_upstream_4xx_is_never_retried(api, upstream, status):
    register(api, upstream.on("/a", status=status, json={"error": "no"}))
    register(api, upstream.on("/b", status=status, json={"error": "no"}))

    response = complete(api)

    assert response.status_code == 502
    assert response.json()["upstream_status"] == status
    assert len(upstream.seen) == 1
    worker = traffic_of(api, upstream.url(upstream.seen[0].path))
    assert worker["in_flight"] == 0 and worker["consecutive_failures"] == 0


def test_a_429_with_retry_after_rests_the_worker_for_that_long(api, upstream):
    busy = upstream.on("/busy", status=429, json={}, headers={"Retry-After": "2"})
    register(api, busy)
    register(api, upstream.on("/good", json=SEED_ANSWER))
    set_policy(api, strategy="round_robin")  # sends the first request to /busy

    before = time.time()
    assert complete(api).status_code == 200
    cooldown = traffic_of(api, busy)["cooldown_until"]
    for _ in range(5):
        assert complete(api).status_code == 200
    assert len(upstream.hits("/busy")) == 1

    ends = timezone.datetime.fromisoformat(cooldown.replace("Z", "+00:00")).timestamp()
    assert before + 2 <= ends <= time.time() + 2
    state = routing_state()
    real_clock = state.clock
    state.clock = lambda: real_clock() + 2.01  # two seconds on
    try:
        for _ in range(4):
            complete(api)
    finally:
        state.clock = real_clock
    assert len(upstream.hits("/busy")) > 1


def test_a_model_without_a_routable_worker_falls_back_to_the_next_model(api, upstream):
    register(api, upstream.on("/main", json=SEED_ANSWER), enabled=False)
    register(
        api, upstream.on("/spare", json={"data": {"items": [{"attributes": {"answer": "spare"}}]}}), model_name="spare"
    )
    set_policy(api, fallbacks=["missing-model", "spare"])

    response = complete(api)

    assert response.status_code == 200
    assert response.json() == {"success": True, "msg": "execute succeed", "result": "spare", "model": "spare"}


def test_when_every_attempt_fails_the_fallback_model_answers(api, upstream):
    register(api, upstream.on("/main", status=500, json={}))
    register(api, upstream.on("/spare", json=SEED_ANSWER), model_name="spare")
    set_policy(api, fallbacks=["spare"])

    response = complete(api)

    assert response.status_code == 200
    assert response.json()["model"] == "spare"
    assert [seen.path for seen in upstream.seen] == ["/main", "/spare"]


def test_a_refused_request_does_not_fall_back(api, upstream):
    register(api, upstream.on("/main", status=400, json={}))
    register(api, upstream.on("/spare", json=SEED_ANSWER), model_name="spare")
    set_policy(api, fallbacks=["spare"])

    assert complete(api).status_code == 502
    assert upstream.hits("/spare") == []


def test_when_every_model_fails_the_error_names_each(api, upstream):
    register(api, upstream.on("/main", status=500, json={}))
    register(api, upstream.on("/spare", status=503, json={}), model_name="spare")
    set_policy(api, fallbacks=["spare"])

    body = complete(api).json()

    assert body["code"] == "upstream_error"
    assert body["tried_models"] == ["proxyllm", "spare"]
    assert "model 'proxyllm'" in body["msg"] and "model 'spare'" in body["msg"]


def test_a_worker_at_its_cap_is_skipped_and_a_full_model_answers_503_at_once(api, upstream, settings):
    settings.MMM_ROUTING_REFRESH_SECONDS = 600
    release = threading.Event()
    slow = upstream.on("/slow", lambda seen: (release.wait(10), Reply(json=SEED_ANSWER))[1])
    register(api, slow, max_inflight=1)
    assert routing_table.workers_for("proxyllm")
    with ThreadPoolExecutor(1) as pool:
        holding = pool.submit(completion_create, model_name="proxyllm", prompt="hold")
        wait_until(lambda: upstream.hits("/slow"), timeout=10, what="the held request to reach the upstream")
        started = time.monotonic()
        response = complete(api)
        waited = time.monotonic() - started
        release.set()
        assert holding.result(timeout=10).result == "I am a fake model."

    assert response.status_code == 503
    assert response.json()["code"] == "workers_at_capacity"
    assert response["Retry-After"] == "1"
    assert waited < 5  # answered without waiting for the slot; the held request took up to 10 s
    assert len(upstream.hits("/slow")) == 1


def test_a_request_cannot_outlive_the_models_deadline(api, upstream):
    register(api, upstream.on("/hang", json=SEED_ANSWER, delay=20), timeout=30)
    register(api, upstream.on("/hang2", json=SEED_ANSWER, delay=20), timeout=30)
    set_policy(api, deadline=0.5)

    started = time.monotonic()
    response = complete(api)

    assert response.status_code == 504
    assert time.monotonic() - started < 5
    assert response.json()["code"] in {"upstream_timeout", "deadline_exceeded"}


def test_per_try_timeout_lets_a_second_worker_answer(api, upstream):
    register(api, upstream.on("/hang", json=SEED_ANSWER, delay=20), timeout=30)
    register(api, upstream.on("/good", json=SEED_ANSWER))
    set_policy(api, strategy="round_robin", per_try_timeout=0.3)

    assert complete(api).status_code == 200
    assert len(upstream.hits("/hang")) == 1


def test_max_attempts_limits_the_workers_tried(api, upstream):
    for name in "abcd":
        register(api, upstream.on(f"/{name}", status=500, json={}))
    set_policy(api, max_attempts=2)

    body = complete(api).json()

    assert body["attempts"] == 2
    assert len(upstream.seen) == 2


def test_the_workers_list_shows_failures_and_ejections(api, upstream, settings):
    bad = upstream.on("/bad", status=502, json={"error": "down"})
    register(api, bad)
    register(api, upstream.on("/good", json=SEED_ANSWER))
    register(api, upstream.on("/good2", json=SEED_ANSWER))
    set_policy(api, strategy="round_robin")

    for _ in range(9):
        assert complete(api).status_code == 200

    seen = traffic_of(api, bad)
    assert seen["ejected_until"] is not None
    assert "HTTP 502" in seen["ejection_reason"]
    assert seen["ejections"] == 1
    assert seen["in_flight"] == 0
    assert seen["recent_success_rate"] == 0.0
    good = traffic_of(api, upstream.url("/good"))
    assert good["recent_success_rate"] == 1.0 and good["latency_ewma_ms"] > 0


def test_a_passing_probe_readmits_an_ejected_worker(api, upstream):
    failing = {"on": True}
    flaky = upstream.on("/flaky", lambda seen: Reply(status=500, json={}) if failing["on"] else Reply(json=SEED_ANSWER))
    register(api, flaky)
    register(api, upstream.on("/good", json=SEED_ANSWER))
    set_policy(api, strategy="round_robin")
    for _ in range(6):
        complete(api)
    assert traffic_of(api, flaky)["ejected_until"] is not None

    failing["on"] = False
    with pytest.raises(SystemExit):
        call_command("probe_workers")

    assert traffic_of(api, flaky)["ejected_until"] is None


# --- Heartbeats -------------------------------------------------------------------------------


def test_a_heartbeat_worker_expires_when_heartbeats_stop_and_returns_when_they_resume(api, upstream, settings):
    settings.MMM_ROUTING_REFRESH_SECONDS = 0
    url = upstream.on("/gen", json=SEED_ANSWER)
    register(api, url, ttl=1)
    assert complete(api).status_code == 200

    time.sleep(1.1)  # no heartbeat for longer than the TTL

    assert complete(api).json()["code"] == "no_routable_worker"
    assert api.get("/api/server/workers").json()["data"][0]["expired"] is True

    beat = api.post("/api/server/heartbeat", {"model_name": "proxyllm", "req_url_template": url}, format="json")
    assert beat.status_code == 200
    assert beat.json()["expires_at"] is not None
    assert complete(api).status_code == 200
    assert api.get("/api/server/workers").json()["data"][0]["expired"] is False


def test_registering_again_is_a_heartbeat(api, upstream):
    url = upstream.on("/gen", json=SEED_ANSWER)
    register(api, url, ttl=60)
    Worker.objects.update(heartbeat_expires_at=timezone.now() - timedelta(seconds=1))  # it had run out

    register(api, url)

    assert Worker.objects.get().heartbeat_expires_at > timezone.now() + timedelta(seconds=55)


def test_a_worker_without_ttl_never_expires(api, upstream):
    url = upstream.on("/gen", json=SEED_ANSWER)
    register(api, url)

    beat = api.post("/api/server/heartbeat", {"model_name": "proxyllm", "req_url_template": url}, format="json")

    assert beat.json()["expires_at"] is None
    assert Worker.objects.get().heartbeat_expires_at is None


def test_a_heartbeat_for_an_unknown_worker_is_a_404_so_it_registers_again(api):
    beat = api.post(
        "/api/server/heartbeat", {"model_name": "m", "req_url_template": "http://127.0.0.1:9/x"}, format="json"
    )

    assert beat.status_code == 404
    assert beat.json()["code"] == "worker_not_found"


def test_probe_workers_removes_workers_expired_for_too_long(api, upstream, settings, capsys):
    settings.MMM_HEARTBEAT_REMOVE_AFTER = 60
    stale = upstream.on("/stale", json=SEED_ANSWER)
    recent = upstream.on("/recent", json=SEED_ANSWER)
    register(api, stale, ttl=10)
    register(api, recent, ttl=10)
    Worker.objects.filter(req_url_template=stale).update(heartbeat_expires_at=timezone.now() - timedelta(seconds=61))
    Worker.objects.filter(req_url_template=recent).update(heartbeat_expires_at=timezone.now() - timedelta(seconds=5))

    with pytest.raises(SystemExit):
        call_command("probe_workers")

    assert list(Worker.objects.values_list("req_url_template", flat=True)) == [recent]
    assert "removed, no heartbeat since" in capsys.readouterr().out
    assert upstream.seen == []  # expired workers are not probed


# --- The policy API ---------------------------------------------------------------------------


def test_a_policy_is_set_listed_changed_and_deleted(api):
    data = set_policy(api, strategy="least_busy", fallbacks=["small"], max_attempts=2)
    assert (data["strategy"], data["fallbacks"], data["max_attempts"]) == ("least_busy", ["small"], 2)

    data = set_policy(api, deadline=30)
    assert (data["strategy"], data["deadline"], data["max_attempts"]) == ("least_busy", 30.0, 2)
    listed = api.get("/api/server/policies").json()["data"]
    assert [policy["model_name"] for policy in listed] == ["proxyllm"]

    deleted = api.post("/api/server/policy/delete", {"model_name": "proxyllm"}, format="json")
    assert deleted.status_code == 200
    assert RoutingPolicy.objects.count() == 0
    again = api.post("/api/server/policy/delete", {"model_name": "proxyllm"}, format="json")
    assert again.status_code == 404


@pytest.mark.parametrize(
    "fields, where",
    [
        ({"strategy": "fastest"}, "strategy"),
        ({"fallbacks": ["proxyllm"]}, "fallbacks"),
        ({"fallbacks": "small"}, "fallbacks"),
        ({"fallbacks": ["a", "a"]}, "fallbacks"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"deadline": "soon"}, "deadline"),
        ({"retries": 3}, "retries"),
    ],
)
def test_a_bad_policy_is_a_400_naming_the_field_and_nothing_is_saved(api, fields, where):
    response = api.post("/api/server/policy", {"model_name": "proxyllm", **fields}, format="json")

    assert response.status_code == 400
    assert where in response.json()["errors"]
    assert RoutingPolicy.objects.count() == 0


def test_a_mistyped_fallback_does_not_hide_the_failure_of_the_model_asked_for(api, upstream):
    register(api, upstream.on("/main", status=503, json={}))
    set_policy(api, fallbacks=["no-such-model"])

    body = complete(api).json()

    assert body["code"] == "upstream_error"  # the 502 of the real tries, not the fallback's 404
    assert body["tried_models"] == ["proxyllm", "no-such-model"]
    assert "no worker is registered for model 'no-such-model'" in body["msg"]


def test_a_worker_ejected_between_the_look_and_the_pick_is_still_tried_in_panic_mode(api, upstream):
    """The race two concurrent requests can run: one ejects the only worker while the other has
    just seen it healthy. The second must not answer 503 without trying anything."""
    from inference.routing_state_local import LocalRoutingState

    class EjectedBehindItsBack(LocalRoutingState):
        raced = False

        def snapshot(self, worker_ids, **looking):
            seen = super().snapshot(worker_ids, **looking)
            if not self.raced:
                self.raced = True
                for worker_id in worker_ids:
                    self._workers.setdefault(worker_id, {}).update(ejected_until=self.clock() + 30, ejections=1)
            return seen

    register(api, upstream.on("/gen", json=SEED_ANSWER))
    assert routing_table.workers_for("proxyllm")

    completion = completion_create(model_name="proxyllm", prompt="hi", state=EjectedBehindItsBack())

    assert completion.result == "I am a fake model."


def test_a_completion_answered_on_its_first_try_asks_the_state_three_times(api, upstream):
    """Each call is a Redis round trip (or one to the host's state server): look, take, give back.
    The retry budget's count of requests rides on the look."""
    from inference.routing_state_local import LocalRoutingState

    class Counting(LocalRoutingState):
        def __init__(self):
            super().__init__()
            self.calls = []

        def __getattribute__(self, name):
            if not name.startswith("_") and name not in ("calls", "clock"):
                self.calls.append(name)
            return super().__getattribute__(name)

    register(api, upstream.on("/gen", json=SEED_ANSWER))
    register(api, upstream.on("/gen2", json=SEED_ANSWER))
    state = Counting()

    completion_create(model_name="proxyllm", prompt="hi", state=state)
    completion_create(model_name="proxyllm", prompt="hi", state=state)

    assert state.calls == ["snapshot", "acquire", "finish"] * 2
    assert state._budget == {("proxyllm", state._window()): [2, 0]}  # both requests counted, once each


def test_a_model_whose_only_worker_has_expired_is_not_listed_in_v1_models(api, upstream):
    register(api, upstream.on("/gen", json=SEED_ANSWER), ttl=30)
    register(api, upstream.on("/other", json=SEED_ANSWER), model_name="steady")
    Worker.objects.filter(model_name="proxyllm").update(heartbeat_expires_at=timezone.now() - timedelta(seconds=1))

    listed = [model["id"] for model in api.get("/v1/models").json()["data"]]

    assert listed == ["steady"]
