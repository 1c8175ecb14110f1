import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from registry.health import ProbeResult, worker_record_probe
from registry.models import HealthState, RoutingPolicy, Worker
from tests.conftest import SEED_ANSWER, seed_registration
from tests.fake_upstream import Reply, refused_url

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


def register(api, url, **fields) -> Worker:
    response = api.post("/api/server/register", seed_registration(url, **fields), format="json")
    assert response.status_code == 200, response.json()
    return Worker.objects.get(req_url_template=url)


def probe(*args) -> tuple[int, str]:
    """Run the command in this process (same test database); return (exit status, output)."""
    from io import StringIO

    out = StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("probe_workers", *args, stdout=out)
    return exited.value.code, out.getvalue()


def complete(api):
    return api.post("/api/v1/chat/completions", {"model_name": "proxyllm", "input": "hi"}, format="json")


def test_a_passing_probe_marks_an_unknown_worker_healthy(api, upstream):
    worker = register(api, upstream.on("/gen", json=SEED_ANSWER))

    status, output = probe()

    worker.refresh_from_db()
    assert status == 0
    assert worker.health_state == HealthState.HEALTHY
    assert worker.last_probe_at is not None
    assert worker.latency_ms is not None
    assert "unknown -> healthy" in output
    assert "probed 1 worker(s): 1 healthy, 0 not healthy, 1 changed" in output
    # Without a health_url the probe is a real request rendered with the probe prompt.
    assert upstream.hits("/gen")[0].json == {"input": "ping", "model_name": "proxyllm"}


def test_a_failing_worker_stops_receiving_traffic_and_comes_back_after_two_passing_probes(api, upstream, settings):
    # The prober is another process in production; reloading the routing table on every
    # request stands in for the refresh interval having passed.
    settings.MMM_ROUTING_REFRESH_SECONDS = 0
    RoutingPolicy.objects.create(model_name="proxyllm", strategy="round_robin")
    healthy_now = {"ok": False}
    flaky = upstream.on(
        "/flaky", lambda seen: Reply(json=SEED_ANSWER) if healthy_now["ok"] else Reply(status=500, json={})
    )
    register(api, flaky)
    register(api, upstream.on("/steady", json=SEED_ANSWER))

    status, output = probe()
    assert status == 1
    assert "unknown -> unhealthy" in output
    flaky_worker = Worker.objects.get(req_url_template=flaky)
    assert flaky_worker.health_state == HealthState.UNHEALTHY
    assert "HTTP 500" in flaky_worker.last_error

    before = len(upstream.hits("/flaky"))
    for _ in range(4):
        assert complete(api).status_code == 200
    assert len(upstream.hits("/flaky")) == before  # out of rotation

    healthy_now["ok"] = True
    probe()
    assert Worker.objects.get(req_url_template=flaky).health_state == HealthState.UNHEALTHY  # one pass is not enough
    status, output = probe()
    assert status == 0
    assert "unhealthy -> healthy" in output

    before = len(upstream.hits("/flaky"))
    for _ in range(4):
        assert complete(api).status_code == 200
    assert len(upstream.hits("/flaky")) == before + 2  # back in rotation


def test_a_health_url_is_probed_with_get(api, upstream):
    worker = register(
        api, upstream.on("/gen", json=SEED_ANSWER), health_url=upstream.on("/health", status=503, json={})
    )

    status, _ = probe()

    worker.refresh_from_db()
    assert status == 1
    assert worker.health_state == HealthState.UNHEALTHY
    assert worker.last_error == "health URL answered HTTP 503"
    assert upstream.hits("/health")[0].method == "GET"
    assert upstream.hits("/gen") == []


def test_a_probe_whose_answer_does_not_extract_fails(api, upstream):
    worker = register(api, upstream.on("/gen", json={"unexpected": True}))

    probe()

    worker.refresh_from_db()
    assert worker.health_state == HealthState.UNHEALTHY
    assert "no key 'data'" in worker.last_error


def test_a_refusing_worker_fails_its_probe(api):
    worker = register(api, refused_url("/gen"))

    probe()

    worker.refresh_from_db()
    assert worker.health_state == HealthState.UNHEALTHY
    assert "connection refused" in worker.last_error


def test_a_probe_times_out(api, upstream, settings):
    settings.MMM_PROBE_TIMEOUT = 0.3
    worker = register(api, upstream.on("/gen", json=SEED_ANSWER, delay=30))

    probe()

    worker.refresh_from_db()
    assert worker.health_state == HealthState.UNHEALTHY
    assert "no answer within 0.3 s" in worker.last_error


def test_model_limits_the_probe_to_one_model(api, upstream):
    register(api, upstream.on("/a", json=SEED_ANSWER))
    other = register(api, upstream.on("/b", json=SEED_ANSWER), model_name="other")

    probe("--model", "other")

    assert upstream.hits("/a") == []
    assert Worker.objects.get(pk=other.pk).health_state == HealthState.HEALTHY


def test_disabled_workers_are_not_probed(api, upstream):
    register(api, upstream.on("/a", json=SEED_ANSWER), enabled=False)

    status, output = probe()

    assert status == 0
    assert upstream.hits("/a") == []
    assert "probed 0 worker(s)" in output


def test_json_output_is_one_object_per_pass(api, upstream):
    worker = register(api, upstream.on("/a", json=SEED_ANSWER))

    _, output = probe("--json")

    report = json.loads(output)
    assert report["probed"] == 1 and report["healthy"] == 1 and report["changed"] == 1
    assert report["changes"] == [{"worker_id": worker.pk, "old_state": "unknown", "new_state": "healthy"}]
    assert report["results"][0]["ok"] is True


def test_a_result_recorded_from_a_stale_read_does_not_overwrite_a_newer_one(api, upstream):
    """Another prober records a failure between this prober's read and its write."""
    from django.utils import timezone

    worker = register(api, upstream.on("/a", json=SEED_ANSWER))
    failed = ProbeResult(worker_id=worker.pk, ok=False, latency_ms=1, error="down", checked_at=timezone.now())
    reads = []

    def read_then_lose_the_race(worker_id):
        row = Worker.objects.get(pk=worker_id)
        if not reads:
            worker_record_probe(result=failed)  # the other prober's write lands now
        reads.append(row)
        return row

    change = worker_record_probe(result=failed, read_worker=read_then_lose_the_race)

    worker.refresh_from_db()
    assert len(reads) == 2  # the first, stale write did not apply; it read again
    assert worker.consecutive_failures == 2  # both failures counted, neither overwritten
    assert change is None  # the other prober reported unknown -> unhealthy; this one saw no change


def test_a_second_failure_counts_on_without_reporting_a_change(api, upstream):
    from django.utils import timezone

    worker = register(api, upstream.on("/a", json=SEED_ANSWER))
    failed = ProbeResult(worker_id=worker.pk, ok=False, latency_ms=1, error="down", checked_at=timezone.now())

    first = worker_record_probe(result=failed)
    second = worker_record_probe(result=failed)

    worker.refresh_from_db()
    assert (first.old_state, first.new_state) == ("unknown", "unhealthy")
    assert second is None
    assert worker.consecutive_failures == 2


def test_health_after_probe_rules():
    worker = Worker(health_state=HealthState.HEALTHY)
    rules = {"failures_to_unhealthy": 2, "successes_to_healthy": 3}

    assert worker.health_after_probe(ok=False, **rules) == (HealthState.HEALTHY, 1, 0)
    worker.consecutive_failures = 1
    assert worker.health_after_probe(ok=False, **rules) == (HealthState.UNHEALTHY, 2, 0)
    worker.health_state, worker.consecutive_failures, worker.consecutive_successes = HealthState.UNHEALTHY, 0, 1
    assert worker.health_after_probe(ok=True, **rules) == (HealthState.UNHEALTHY, 0, 2)
    worker.consecutive_successes = 2
    assert worker.health_after_probe(ok=True, **rules) == (HealthState.HEALTHY, 0, 3)


@pytest.mark.django_db(transaction=True)
def test_loop_mode_stops_cleanly_on_sigterm(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "MMM_VAR_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    process = subprocess.Popen(
        [sys.executable, "-u", "manage.py", "probe_workers", "--loop", "--interval", "60"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first_line = process.stdout.readline()  # the first pass has finished
        assert first_line.startswith("probed 0 worker(s)")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()


@pytest.mark.django_db(transaction=True)
def test_loop_mode_goes_on_while_the_database_is_unavailable(tmp_path):
    # A database without the gateway's tables fails every query, as one that is away does.
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}", "MMM_VAR_DIR": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-u", "manage.py", "probe_workers", "--loop", "--interval", "0.2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        skipped = []
        deadline = time.monotonic() + 60
        while len(skipped) < 2:  # two passes: the loop went on
            ready, _, _ = select.select([process.stderr], [], [], max(deadline - time.monotonic(), 0))
            assert ready, f"waited 60 s for two skipped passes, got {skipped}"
            skipped.append(process.stderr.readline())
        assert all(line.startswith("probe pass skipped, the database is unavailable") for line in skipped), skipped
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)  # reads what it still writes, so a full pipe cannot hold it
        assert process.returncode == 0
    finally:
        process.kill()


def test_an_unexpected_error_in_one_probe_fails_that_worker_and_the_pass_goes_on(upstream):
    # Written past validation, as rows from an older release could be.
    broken = Worker.objects.create(
        model_name="m",
        req_url_template=upstream.on("/a", json=SEED_ANSWER),
        body={"p": "{USER_PROMPT}"},
        headers={"X-Key": "秘密"},
        response_extract="data.items[].attributes.answer",
    )
    fine = Worker.objects.create(
        model_name="m",
        req_url_template=upstream.on("/b", json=SEED_ANSWER),
        body={"p": "{USER_PROMPT}"},
        response_extract="data.items[].attributes.answer",
    )

    status, output = probe()

    broken.refresh_from_db()
    fine.refresh_from_db()
    assert status == 1
    assert broken.health_state == HealthState.UNHEALTHY
    assert broken.last_error.startswith("probe failed: ")
    assert fine.health_state == HealthState.HEALTHY
    assert "probed 2 worker(s): 1 healthy, 1 not healthy" in output


def test_workers_of_the_native_kinds_are_probed_in_their_own_api(api, upstream, settings):
    from registry.health import worker_probe
    from tests.fake_anthropic import AnthropicServer
    from tests.fake_ollama import OllamaServer

    ollama = OllamaServer()
    api.post(
        "/api/server/register",
        {"model_name": "llama", "preset": "ollama", "base_url": ollama.install(upstream), "upstream_model": "llama3.2"},
        format="json",
    )
    claude = AnthropicServer(api_key="sk-ant-right-key")
    api.post(
        "/api/server/register",
        {
            "model_name": "claude",
            "preset": "anthropic",
            "base_url": claude.install(upstream),
            "api_key": "sk-ant-wrong-key",
        },
        format="json",
    )

    passed = worker_probe(worker=Worker.objects.get(model_name="llama"))
    failed = worker_probe(worker=Worker.objects.get(model_name="claude"))

    assert passed.ok and passed.error == ""
    assert ollama.bodies[-1]["messages"] == [{"role": "user", "content": settings.MMM_PROBE_PROMPT}]
    assert not failed.ok and "HTTP 401" in failed.error and "invalid x-api-key" in failed.error
    assert "sk-ant-wrong-key" not in failed.error
