"""Engine routing in the gateway as `make serve` runs it: the scraper gunicorn starts beside its
workers, and prefix tables two gateway instances share through Redis."""

import uuid

import pytest

from tests.conftest import seed_registration
from tests.fake_engines import FakeEngine
from tests.gateway_process import GatewayProcess, gateway_database
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

COMPLETIONS = "/api/v1/chat/completions"
SYSTEM = "You are the support assistant of a shipping company; answer in two sentences. " * 20


@pytest.fixture
def fake_engines():
    made = [FakeEngine("vllm") for _ in range(3)]
    yield made
    for engine in made:
        engine.stop()


def register_all(gateway, engines, *, strategy: str) -> None:
    for engine in engines:
        gateway.post("/api/server/register", seed_registration(engine.url, engine="vllm")).raise_for_status()
    gateway.post("/api/server/policy", {"model_name": "proxyllm", "strategy": strategy}).raise_for_status()


def test_the_gateway_runs_a_scraper_beside_its_workers(tmp_path, fake_engines):
    with gateway_database(tmp_path) as env:
        env = {**env, "REDIS_URL": "", "MMM_WEB_WORKERS": "2"}  # the host's shared state, no Redis
        GatewayProcess(env=env).manage("migrate", "--noinput", "-v0").check_returncode()
        gateway = GatewayProcess(env=env).start()
        try:
            busy = fake_engines[0]
            busy.load.waiting = 30
            register_all(gateway, fake_engines, strategy="engine_aware")

            def all_fresh():
                rows = gateway.get("/api/server/workers").json()["data"]
                return all(row["engine_state"]["fresh"] for row in rows) and rows

            rows = wait_until(all_fresh, timeout=30, what="the scraper to read all three engines")
            assert {row["engine_state"]["queue"] for row in rows} == {0, 30}
            for n in range(8):
                assert gateway.post(COMPLETIONS, {"model_name": "proxyllm", "input": f"q{n}"}).status_code == 200
            assert busy.answered == 0
        finally:
            gateway.stop()


@pytest.mark.postgres
@pytest.mark.redis
def test_two_gateways_share_their_prefix_tables_through_redis(tmp_path, fake_engines):
    with gateway_database(tmp_path) as env:
        env = {**env, "MMM_ROUTING_STATE_PREFIX": f"mmm:e2e:{uuid.uuid4().hex[:8]}", "MMM_WEB_WORKERS": "2"}
        GatewayProcess(env=env).manage("migrate", "--noinput", "-v0").check_returncode()
        a, b = GatewayProcess(env=env).start(), GatewayProcess(env=env).start()
        try:
            register_all(a, fake_engines, strategy="prefix_aware")
            for n in range(3):
                prompt = f"{SYSTEM}\nuser: question {n}"
                gateway = a if n % 2 == 0 else b  # turns of one conversation through both instances
                wait_until(
                    lambda gateway=gateway, prompt=prompt: (
                        gateway.post(COMPLETIONS, {"model_name": "proxyllm", "input": prompt}).status_code == 200
                    ),
                    timeout=30,
                    what="the gateway to know the model and answer",
                )
            assert sorted(engine.answered for engine in fake_engines) == [0, 0, 3]
        finally:
            a.stop()
            b.stop()
