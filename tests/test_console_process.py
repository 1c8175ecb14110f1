"""The console as served: gunicorn with several gevent worker processes."""

import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import seed_registration
from tests.fake_upstream import Reply
from tests.gateway_process import GatewayProcess, gateway_database

pytestmark = pytest.mark.e2e

ASK = {"input": "hi", "model_name": "proxyllm"}
ANSWER = {"data": {"items": [{"attributes": {"answer": "ok"}}]}}


@pytest.fixture
def gateway_env(tmp_path):
    with gateway_database(tmp_path) as env:
        GatewayProcess(env=env).manage("migrate", "--noinput", "-v0").check_returncode()
        yield env


def logged_rows(gateway: GatewayProcess) -> int:
    shell = gateway.manage("shell", "-c", "from console.models import RequestLog; print(RequestLog.objects.count())")
    shell.check_returncode()
    return int(shell.stdout.strip().splitlines()[-1])


def test_a_clean_shutdown_writes_every_queued_row(gateway_env, upstream):
    # The flusher would wait an hour: the rows are in memory until gunicorn stops.
    env = {
        **gateway_env,
        "MMM_REQUEST_LOG_FLUSH_SECONDS": "3600",
        "MMM_REQUEST_LOG_BATCH": "100000",
        "MMM_WEB_WORKERS": "2",
    }
    gateway = GatewayProcess(env=env).start()
    try:
        gateway.post("/api/server/register", seed_registration(upstream.on("/gen", json=ANSWER))).raise_for_status()
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: gateway.post("/api/v1/chat/completions", ASK).status_code, range(40)))
        assert statuses == [200] * 40
        assert logged_rows(gateway) == 0
    finally:
        gateway.stop()  # SIGTERM

    assert gateway.process.returncode == 0
    assert logged_rows(gateway) == 40


def metric_samples(text: str, name: str) -> list:
    return [
        sample for family in text_string_to_metric_families(text) for sample in family.samples if sample.name == name
    ]


def requests_counted_by_each_process(directory: Path) -> dict[str, float]:
    """The mmm_requests_total of each process, read from its own counter file."""
    counted = {}
    for path in directory.glob("counter_*.db"):
        with tempfile.TemporaryDirectory() as alone:
            shutil.copy(path, alone)
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=alone)
            counted[path.stem] = sum(
                sample.value
                for metric in registry.collect()
                for sample in metric.samples
                if sample.name == "mmm_requests_total"
            )
    return counted


def test_metrics_add_up_the_traffic_of_every_process(gateway_env, upstream, tmp_path):
    gateway = GatewayProcess(env={**gateway_env, "MMM_WEB_WORKERS": "2"}).start()
    try:
        good = upstream.on("/gen", Reply(json=ANSWER, delay=0.05))
        gateway.post("/api/server/register", seed_registration(good)).raise_for_status()
        gateway.post(
            "/api/server/register", seed_registration(upstream.on("/bad", status=500, json={}), model_name="broken")
        ).raise_for_status()
        directory = Path(gateway_env["MMM_VAR_DIR"]) / "prometheus" / str(gateway.port)

        sent = {"proxyllm": 0, "broken": 0}
        # Concurrent requests spread over both processes; more rounds until both served some.
        for _ in range(20):
            with ThreadPoolExecutor(16) as pool:
                statuses = list(
                    pool.map(
                        lambda index: (
                            gateway.post(
                                "/api/v1/chat/completions", ASK if index % 4 else {**ASK, "model_name": "broken"}
                            ).status_code
                        ),
                        range(32),
                    )
                )
            assert sorted(set(statuses)) == [200, 502]
            sent["proxyllm"] += statuses.count(200)
            sent["broken"] += statuses.count(502)
            if sum(1 for count in requests_counted_by_each_process(directory).values() if count) >= 2:
                break
        assert sum(1 for count in requests_counted_by_each_process(directory).values() if count) >= 2

        for _ in range(6):  # whichever process answers the scrape
            text = requests.get(gateway.url + "/metrics", timeout=10).text
            counts = {
                (sample.labels["model"], sample.labels["status"]): sample.value
                for sample in metric_samples(text, "mmm_requests_total")
            }
            assert counts == {("proxyllm", "200"): sent["proxyllm"], ("broken", "502"): sent["broken"]}
            durations = {
                sample.labels["model"]: sample.value
                for sample in metric_samples(text, "mmm_request_duration_seconds_count")
            }
            assert durations == {"proxyllm": sent["proxyllm"], "broken": sent["broken"]}
            in_flight = [sample.value for sample in metric_samples(text, "mmm_requests_in_flight")]
            assert in_flight and set(in_flight) == {0.0}
            healthy = {sample.labels["model"]: sample.value for sample in metric_samples(text, "mmm_worker_routable")}
            assert healthy == {"proxyllm": 1.0, "broken": 1.0}
    finally:
        gateway.stop()


def test_readyz_is_503_when_the_database_cannot_be_reached(tmp_path):
    env = {"MMM_VAR_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path / 'missing' / 'db.sqlite3'}"}
    gateway = GatewayProcess(env=env).start()
    try:
        assert gateway.get("/healthz").status_code == 200
        response = gateway.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {"status": "unavailable", "failed": {"database": "unreachable (OperationalError)"}}
    finally:
        gateway.stop()
