"""Jobs through real gateways (gunicorn, gevent workers, the job runner gunicorn starts beside
itself or run_jobs processes of their own) against fakes of a /v1/videos API and ComfyUI."""

import os
import signal
import subprocess
import sys
import uuid

import pytest
import requests

from tests.fake_comfyui import ComfyUIServer
from tests.fake_jobs import FakeJobServer
from tests.fake_openai_videos import OpenAIVideosServer
from tests.gateway_process import ROOT, GatewayProcess, gateway_database
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

VIDEO_KEY = "sk-test-videos"
# Short leases and polls, so a job whose runner was killed is taken over within seconds.
FAST = {
    "MMM_WEB_WORKERS": "2",
    "MMM_JOB_LEASE_SECONDS": "2",
    "MMM_JOB_POLL_MIN_SECONDS": "0.1",
    "MMM_JOB_POLL_MAX_SECONDS": "0.5",
    "MMM_JOB_EARLY_POLL_SECONDS": "0.2",
}


@pytest.fixture
def fakes():
    started: list[FakeJobServer] = []

    def start(server: FakeJobServer) -> FakeJobServer:
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def database(tmp_path):
    with gateway_database(tmp_path) as env:
        env = {**env, **FAST}
        GatewayProcess(env=env).manage("migrate", "--noinput", "-v0").check_returncode()
        yield env


@pytest.fixture
def gateways(database):
    started: list[GatewayProcess] = []

    def start(**env: str) -> GatewayProcess:
        started.append(GatewayProcess(env={**database, **env}).start())
        return started[-1]

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture
def runners(database):
    """Separate `manage.py run_jobs --loop` processes, as production runs them."""
    started: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        env = {**os.environ, "MMM_REQUIRE_AUTH": "false", **database}
        started.append(
            subprocess.Popen(
                [sys.executable, "manage.py", "run_jobs", "--loop"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def register_videos(gateway, server, *, model="wan-video", capacity=2) -> None:
    gateway.post(
        "/api/server/register",
        {
            "model_name": model,
            "preset": "openai-videos",
            "base_url": server.url + "/v1",
            "api_key": VIDEO_KEY,
            "upstream_model": "sora-2",
            "capacity": capacity,
            "timeout": 5,
        },
    ).raise_for_status()


def create(gateway, **fields) -> dict:
    response = gateway.post("/v1/videos", {"model": "wan-video", "prompt": "p", "seconds": "4", **fields})
    assert response.status_code == 200, response.text
    return response.json()


def all_completed(gateway, ids):
    def check():
        statuses = [gateway.get(f"/v1/videos/{job_id}").json()["status"] for job_id in ids]
        assert "failed" not in statuses, statuses
        return all(status == "completed" for status in statuses)

    return check


def video_ids_in(server) -> set[str]:
    """The upstream video ids each request to ``server`` named (polls, fetches, cancels)."""
    named = set()
    for seen in server.seen:
        parts = seen.path.split("?")[0].split("/")
        if len(parts) >= 4 and parts[1:3] == ["v1", "videos"]:
            named.add(parts[3])
    return named


def test_every_poll_and_fetch_of_a_job_reaches_the_worker_that_accepted_it(fakes, gateways):
    first, second = fakes(OpenAIVideosServer(duration=0.5)), fakes(OpenAIVideosServer(duration=0.5))
    gateway = gateways()
    register_videos(gateway, first)
    register_videos(gateway, second)
    ids = [create(gateway)["id"] for _ in range(8)]

    wait_until(all_completed(gateway, ids), timeout=60, what="all 8 videos to complete", poll=0.2)
    for job_id in ids:
        got = gateway.get(f"/v1/videos/{job_id}/content")
        assert got.status_code == 200, (got.text, gateway.get(f"/v1/videos/{job_id}").text)
    for server in (first, second):
        own = set(server.book.jobs)
        assert own, "both workers got jobs"
        assert video_ids_in(server) <= own, "a request about another worker's job reached this one"
        for upstream_id in own:
            asked = [seen.path for seen in server.requests_about(upstream_id)]
            assert any(path.endswith("/content") for path in asked), f"{upstream_id} was never fetched here"
    assert len(first.book.jobs) + len(second.book.jobs) == 8


def test_twenty_jobs_on_two_workers_of_capacity_two_never_run_more_than_four_and_all_complete(fakes, gateways):
    first, second = fakes(OpenAIVideosServer(duration=0.5)), fakes(OpenAIVideosServer(duration=0.5))
    gateway = gateways()
    register_videos(gateway, first, capacity=2)
    register_videos(gateway, second, capacity=2)
    ids = [create(gateway)["id"] for _ in range(20)]

    last = ids[-1]
    positions = []

    def watch_the_last_job():
        shown = gateway.get(f"/v1/videos/{last}").json()
        if shown["queue_position"] is not None:
            positions.append(shown["queue_position"])
        return shown["status"] == "completed"

    wait_until(watch_the_last_job, timeout=90, what="the last of 20 videos to complete", poll=0.1)
    wait_until(all_completed(gateway, ids), timeout=60, what="all 20 videos to complete", poll=0.2)
    assert first.book.max_running <= 2 and second.book.max_running <= 2
    assert len(first.book.jobs) + len(second.book.jobs) == 20
    assert positions and positions[0] > positions[-1], positions
    assert positions == sorted(positions, reverse=True), "a queue position went up"


def test_jobs_complete_after_the_gateway_and_the_runner_are_killed_mid_job(fakes, gateways, runners):
    videos = fakes(OpenAIVideosServer(duration=2.0))
    gateway = gateways(MMM_JOB_RUNNER="false")
    runner = runners()
    register_videos(gateway, videos, capacity=3)
    ids = [create(gateway)["id"] for _ in range(6)]
    wait_until(lambda: len(videos.book.running()) >= 2, timeout=30, what="jobs to be running upstream", poll=0.05)

    os.kill(gateway.process.pid, signal.SIGKILL)
    runner.send_signal(signal.SIGKILL)
    gateway.process.wait(timeout=15)
    runner.wait(timeout=15)

    again = gateways(MMM_JOB_RUNNER="false")
    runners()
    wait_until(all_completed(again, ids), timeout=90, what="every job to complete after the restart", poll=0.2)
    for job_id in ids:
        assert again.get(f"/v1/videos/{job_id}/content").status_code == 200


@pytest.mark.postgres
@pytest.mark.redis
def test_two_gateways_and_two_runners_on_one_database_submit_no_job_twice_and_lose_none(fakes, gateways):
    first, second = fakes(OpenAIVideosServer(duration=0.3)), fakes(OpenAIVideosServer(duration=0.3))
    prefix = {"MMM_ROUTING_STATE_PREFIX": f"mmm:e2e:{uuid.uuid4().hex[:8]}"}
    a, b = gateways(**prefix), gateways(**prefix)  # each starts its own runner
    register_videos(a, first, capacity=2)
    register_videos(b, second, capacity=2)
    ids = [create(a if n % 2 else b)["id"] for n in range(30)]

    wait_until(all_completed(a, ids), timeout=120, what="all 30 videos to complete", poll=0.3)
    submissions = [seen for server in (first, second) for seen in server.seen if seen.method == "POST"]
    assert len(submissions) == 30, "a job was submitted twice (or one never was)"
    assert first.book.max_running <= 2 and second.book.max_running <= 2
    assert len(first.book.jobs) + len(second.book.jobs) == 30


def test_the_openai_sdk_videos_resource_creates_retrieves_and_downloads(fakes, gateways):
    from openai import OpenAI

    videos = fakes(OpenAIVideosServer(duration=0.3))
    gateway = gateways()
    register_videos(gateway, videos)
    client = OpenAI(base_url=gateway.url + "/v1", api_key="unused-with-keys-off", max_retries=0, timeout=30)

    made = client.videos.create(model="wan-video", prompt="a paper boat", seconds="4", size="720x1280")
    assert made.status == "queued" and made.object == "video"
    done = wait_until(
        lambda: (video := client.videos.retrieve(made.id)).status == "completed" and video,
        timeout=60,
        what="the video to complete",
        poll=0.2,
    )
    assert done.progress == 100 and done.id == made.id
    content = client.videos.download_content(made.id).read()
    [upstream] = videos.book.jobs.values()
    assert content == upstream.result
    assert [video.id for video in client.videos.list()] == [made.id]
    assert client.videos.delete(made.id).deleted is True
    with pytest.raises(Exception) as gone:
        client.videos.retrieve(made.id)
    assert getattr(gone.value, "status_code", None) == 404


def test_a_comfyui_image_job_works_through_the_gateway_with_its_own_runner(fakes, gateways):
    comfy = fakes(ComfyUIServer(duration=0.3))
    gateway = gateways()
    gateway.post(
        "/api/server/register", {"model_name": "sdxl", "preset": "comfyui", "base_url": comfy.url}
    ).raise_for_status()
    job = gateway.post("/v1/images/jobs", {"model": "sdxl", "prompt": "a red kite"}).json()

    def completed():
        return gateway.get(f"/v1/images/jobs/{job['id']}").json()["status"] == "completed"

    wait_until(completed, timeout=60, what="the image job to complete", poll=0.2)
    content = requests.get(f"{gateway.url}/v1/images/jobs/{job['id']}/content", timeout=30)
    assert content.status_code == 200 and content.content.startswith(b"\x89PNG")
