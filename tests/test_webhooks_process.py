"""A job's webhook through a real gateway: gunicorn with the job runner and the webhook sender
it starts beside itself (as `make serve` runs), a Runway fake as the worker, and a receiver that
checks the signature with the standardwebhooks package."""

import uuid

import pytest
from standardwebhooks import Webhook

from tests.fake_runway import RunwayServer
from tests.fake_upstream import FakeUpstream, Reply
from tests.gateway_process import GatewayProcess, gateway_database
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

FAST = {
    "MMM_WEB_WORKERS": "1",
    "MMM_JOB_POLL_MIN_SECONDS": "0.1",
    "MMM_JOB_POLL_MAX_SECONDS": "0.5",
    "MMM_WEBHOOK_BACKOFF_SECONDS": "0.5",
    "MMM_WEBHOOK_SENDER": "true",
}


def key_with_webhook(gateway: GatewayProcess, url: str, *options: str) -> tuple[str, str]:
    """(key, webhook secret) of an inference key made by create_api_key with a webhook to ``url``."""
    made = gateway.manage("create_api_key", "--scope", "inference", "--webhook-url", url, *options)
    made.check_returncode()
    lines = made.stdout.strip().splitlines()
    return lines[-1], next(line for line in lines if "whsec_" in line).rsplit(" ", 1)[-1]


@pytest.fixture
def receiver():
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def runway():
    server = RunwayServer(duration=0.3).start()
    yield server
    server.stop()


def test_a_finished_video_job_is_posted_to_its_keys_webhook_signed_and_retried_after_a_500(tmp_path, receiver, runway):
    answers = iter([Reply(status=500, text="not yet")])
    receiver.on("/hook", lambda seen: next(answers, Reply(status=204, text="")))
    with gateway_database(tmp_path) as env:
        gateway = GatewayProcess(env={**env, **FAST})
        gateway.manage("migrate", "--noinput", "-v0").check_returncode()
        key, secret = key_with_webhook(gateway, receiver.url("/hook"), "--name", "video app")
        gateway.start()
        try:
            registered = gateway.post(
                "/api/server/register",
                {
                    "model_name": "veo",
                    "preset": "runway",
                    "base_url": runway.url + "/v1",
                    "api_key": runway.api_key,
                    "upstream_model": "veo3.1",
                },
            )
            assert registered.status_code == 200, registered.text
            gateway.headers = {"Authorization": f"Bearer {key}"}
            job = gateway.post("/v1/videos", {"model": "veo", "prompt": "a webhook at dusk"}).json()

            def delivered():
                return [seen for seen in receiver.hits("/hook") if seen.method == "POST"][1:]

            [seen] = wait_until(delivered, timeout=60, what="the webhook, tried again after the receiver's 500")
        finally:
            gateway.stop()
    event = Webhook(secret).verify(seen.body, seen.headers)
    assert event["type"] == "video.completed" and event["data"]["id"] == job["id"]
    assert event["data"]["status"] == "completed"
    first, second = receiver.hits("/hook")
    assert first.body == second.body and first.headers["webhook-id"] == second.headers["webhook-id"]


def test_a_budget_crossing_80_percent_is_posted_once_when_usage_is_settled_behind_the_response(tmp_path, receiver):
    from tests.fake_model_apis import OpenAIServer

    receiver.on("/hook", lambda seen: Reply(status=204, text=""))
    base_url = OpenAIServer().install(receiver)  # the fake reports 11 tokens per answer
    with gateway_database(tmp_path) as env:
        # Settled in each worker's flusher, as a production gateway settles (not in the request).
        gateway = GatewayProcess(
            env={
                **env,
                **FAST,
                "MMM_USAGE_SETTLE_BEHIND": "true",
                # Counters of its own in a shared Redis: a new database numbers its keys from 1 again.
                "MMM_USAGE_PREFIX": f"mmm:test-usage:{uuid.uuid4().hex[:8]}",
            }
        )
        gateway.manage("migrate", "--noinput", "-v0").check_returncode()
        key, secret = key_with_webhook(
            gateway, receiver.url("/hook"), "--name", "budgeted app", "--budget-tokens", "40", "--budget-period", "day"
        )
        gateway.start()
        try:
            registered = gateway.post(
                "/api/server/register",
                {"model_name": "gpt", "kind": "openai", "req_url_template": base_url, "upstream_model": "up-model"},
            )
            assert registered.status_code == 200, registered.text
            gateway.headers = {"Authorization": f"Bearer {key}"}
            ask = {"model": "gpt", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 10}
            # 11, 22, then 33 of 40 tokens: the third crosses 80 %; a fourth has no room for its estimate.
            statuses = [gateway.post("/v1/chat/completions", ask).status_code for _ in range(3)]
            assert statuses == [200, 200, 200]

            def posted():
                return [seen for seen in receiver.hits("/hook") if seen.method == "POST"]

            [seen] = wait_until(posted, timeout=60, what="the budget.threshold webhook")
            refused = gateway.post("/v1/chat/completions", ask)
        finally:
            gateway.stop()
    event = Webhook(secret).verify(seen.body, seen.headers)
    assert event["type"] == "budget.threshold"
    assert (event["data"]["threshold_percent"], event["data"]["spent"], event["data"]["limit"]) == (80, 33, 40)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded"
