"""The Replicate, Runway and fal presets of the job worker kind, end to end: registered by
preset, used through /v1/videos and /v1/images/jobs with the job runner in this process,
against the fakes of those APIs (tests/fake_replicate.py, fake_runway.py, fake_fal.py); and a
finished job's webhook, verified as its receiver would."""

import pytest
from standardwebhooks import Webhook

from accounts.services import api_key_create
from jobs.models import Job, JobStatus
from tests.conftest import bearer
from tests.fake_fal import FalServer
from tests.fake_replicate import ReplicateServer
from tests.fake_runway import RunwayServer
from tests.fake_upstream import FakeUpstream
from tests.test_jobs import create, register, results_in_tmp, run_until, runner, servers, status_of  # noqa: F401
from webhooks.delivery import deliver_due
from webhooks.services import webhook_endpoint_create

pytestmark = pytest.mark.django_db(transaction=True)


def job_of(public_id: str) -> Job:
    return Job.objects.get(public_id=public_id)


def completes(runner, public_id: str) -> Job:
    run_until(runner, lambda: status_of(public_id) in (JobStatus.COMPLETED, JobStatus.FAILED), what="the job to end")
    job = job_of(public_id)
    assert job.status == JobStatus.COMPLETED, job.error
    return job


def content(api, path: str) -> bytes:
    response = api.get(path)
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content)


def register_replicate(api, server, *, preset="replicate", model="flux"):
    return register(
        api,
        model_name=model,
        preset=preset,
        base_url=server.url + "/v1",
        api_key=server.token,
        upstream_model="black-forest-labs/flux-schnell",
    )


def register_runway(api, server, *, model="veo"):
    return register(
        api,
        model_name=model,
        preset="runway",
        base_url=server.url + "/v1",
        api_key=server.api_key,
        upstream_model="veo3.1",
    )


def register_fal(api, server, *, preset="fal", app="fal-ai/flux/dev", model="flux-fal", capacity=None):
    return register(
        api, model_name=model, preset=preset, base_url=f"{server.url}/{app}", api_key=server.api_key, capacity=capacity
    )


def test_an_image_job_on_replicate_runs_as_a_prediction_and_serves_its_output(api, servers, runner):
    replicate = servers(ReplicateServer(duration=0.2, start_delay=0.1))
    register_replicate(api, replicate)
    job = create(api, "/v1/images/jobs", model="flux", prompt="a lighthouse", size="512x768")

    done = completes(runner, job["id"])

    [submitted] = replicate.upstream.hits("/v1/predictions")
    assert submitted.headers["Authorization"] == f"Bearer {replicate.token}"
    assert submitted.json == {
        "version": "black-forest-labs/flux-schnell",
        "input": {"prompt": "a lighthouse", "width": 512, "height": 768},
    }
    prediction = replicate.book.look(done.upstream_id, poll=False)
    assert content(api, f"/v1/images/jobs/{job['id']}/content") == prediction.result
    asked = {seen.path for seen in replicate.requests_about(done.upstream_id)}
    assert {f"/v1/predictions/{done.upstream_id}", f"/files/{done.upstream_id}/out-0.png"} <= asked


def test_a_replicate_video_job_deleted_while_running_is_canceled_on_replicate(api, servers, runner):
    replicate = servers(ReplicateServer(duration=30, media="video"))
    register_replicate(api, replicate, preset="replicate-video", model="wan")
    job = create(api, model="wan", prompt="a long take")
    run_until(runner, lambda: status_of(job["id"]) == JobStatus.RUNNING, what="the prediction to be submitted")
    upstream_id = job_of(job["id"]).upstream_id

    assert api.delete(f"/v1/videos/{job['id']}").json()["deleted"] is True

    assert replicate.book.look(upstream_id, poll=False).state == "canceled"
    assert [seen.method for seen in replicate.upstream.hits(f"/v1/predictions/{upstream_id}/cancel")] == ["POST"]


@pytest.mark.parametrize(
    "make, register_it, model",
    [
        (ReplicateServer, register_replicate, "flux"),
        (RunwayServer, register_runway, "veo"),
        (FalServer, register_fal, "flux-fal"),
    ],
    ids=["replicate", "runway", "fal"],
)
def test_a_job_that_fails_upstream_fails_with_the_upstreams_reason(api, servers, runner, make, register_it, model):
    server = servers(make(duration=0.1))
    server.book.fail_next = 1
    register_it(api, server)
    job = create(api, model=model, prompt="x")
    run_until(runner, lambda: status_of(job["id"]) == JobStatus.FAILED, what="the job to fail")
    assert server.book.failure in job_of(job["id"]).error


def test_a_video_job_on_runway_reports_progress_and_serves_the_video(api, servers, runner):
    runway = servers(RunwayServer(duration=1.0))
    register_runway(api, runway)
    job = create(api, model="veo", prompt="waves at night", size="720x1280")

    run_until(runner, lambda: 0 < job_of(job["id"]).progress < 100, what="progress from Runway's RUNNING task")
    done = completes(runner, job["id"])

    [submitted] = runway.upstream.hits("/v1/text_to_video")
    assert submitted.json == {"model": "veo3.1", "promptText": "waves at night", "ratio": "720:1280"}
    assert submitted.headers["X-Runway-Version"] == "2024-11-06"
    assert all(seen.headers.get("X-Runway-Version") for seen in runway.requests_about(done.upstream_id))
    assert content(api, f"/v1/videos/{job['id']}/content") == runway.book.look(done.upstream_id, poll=False).result


def test_a_deleted_runway_job_is_cancelled_with_delete_on_its_task(api, servers, runner):
    runway = servers(RunwayServer(duration=30))
    register_runway(api, runway)
    job = create(api, model="veo", prompt="x")
    run_until(runner, lambda: status_of(job["id"]) == JobStatus.RUNNING, what="the task to be submitted")
    upstream_id = job_of(job["id"]).upstream_id
    api.delete(f"/v1/videos/{job['id']}")
    assert runway.book.look(upstream_id, poll=False).state == "canceled"


def test_an_image_job_on_fals_queue_polls_the_apps_status_and_fetches_its_result(api, servers, runner):
    fal = servers(FalServer(duration=0.2))
    register_fal(api, fal)
    job = create(api, "/v1/images/jobs", model="flux-fal", prompt="a red fox")

    done = completes(runner, job["id"])

    [submitted] = fal.upstream.hits("/fal-ai/flux/dev")
    assert submitted.json == {"prompt": "a red fox"} and submitted.headers["Authorization"] == f"Key {fal.api_key}"
    paths = {seen.path.split("?")[0] for seen in fal.requests_about(done.upstream_id)}
    assert f"/fal-ai/flux/requests/{done.upstream_id}/status" in paths  # the app without its path
    assert f"/fal-ai/flux/requests/{done.upstream_id}" in paths  # the result, then its file
    assert content(api, f"/v1/images/jobs/{job['id']}/content") == fal.book.look(done.upstream_id, poll=False).result


def test_a_fal_video_job_deleted_while_queued_there_is_cancelled_with_put(api, servers, runner):
    fal = servers(FalServer(duration=30, capacity=1, media="video"))
    app = "fal-ai/wan/v2.2-a14b/text-to-video"
    register_fal(api, fal, preset="fal-video", app=app, model="wan-fal", capacity=2)  # more than fal runs at once
    first, second = (create(api, model="wan-fal", prompt=text) for text in ("first", "second"))
    run_until(
        runner,
        lambda: all(status_of(job["id"]) == JobStatus.RUNNING for job in (first, second)),
        what="both requests submitted to fal",
    )
    # fal runs one at a time here: one request runs, the other waits in fal's own queue.
    [waiting] = [job for job in (first, second) if fal.book.look(job_of(job["id"]).upstream_id).state == "queued"]
    upstream_id = job_of(waiting["id"]).upstream_id
    api.delete(f"/v1/videos/{waiting['id']}")
    assert [seen.method for seen in fal.upstream.hits(f"/fal-ai/wan/requests/{upstream_id}/cancel")] == ["PUT"]
    assert fal.book.look(upstream_id, poll=False).state == "canceled"


def test_each_fal_job_is_polled_and_fetched_only_on_the_worker_that_accepted_it(api, servers, runner):
    fals = [servers(FalServer(duration=0.3)) for _ in range(2)]
    for server in fals:
        register_fal(api, server)
    jobs = [create(api, "/v1/images/jobs", model="flux-fal", prompt=f"p{index}") for index in range(4)]
    for job in jobs:
        completes(runner, job["id"])
    for job in jobs:
        upstream_id = job_of(job["id"]).upstream_id
        [owner] = [server for server in fals if upstream_id in server.book.jobs]
        [other] = [server for server in fals if server is not owner]
        assert owner.requests_about(upstream_id) and not other.requests_about(upstream_id)
    assert all(server.book.jobs for server in fals)  # submissions spread over both


def test_a_fal_base_url_that_names_no_app_is_refused_saying_so(api, servers):
    fal = servers(FalServer())
    response = api.post(
        "/api/server/register",
        {"model_name": "x", "preset": "fal", "base_url": f"{fal.url}/fal-ai", "api_key": "k"},
        format="json",
    )
    assert response.status_code == 400 and "owner/app" in str(response.json())


def test_a_finished_job_sends_its_keys_webhook_signed(api, servers, runner):
    receiver = FakeUpstream().start()
    try:
        receiver.on("/hook", status=204, text="")
        key, secret_key = api_key_create(name="video app", scopes=["inference"])
        _, secret = webhook_endpoint_create(api_key=key, url=receiver.url("/hook"), event_types=["video.*"])
        runway = servers(RunwayServer(duration=0.1))
        register_runway(api, runway)
        job = create(api, headers=bearer(secret_key), model="veo", prompt="a webhook")
        completes(runner, job["id"])

        assert deliver_due(limit=10) == 1
        [seen] = receiver.hits("/hook")
        event = Webhook(secret).verify(seen.body, seen.headers)
        assert event["type"] == "video.completed" and event["data"]["id"] == job["id"]
        assert event["data"]["status"] == "completed"
    finally:
        receiver.stop()


def test_the_fal_preset_submits_to_the_whole_endpoint_and_asks_under_the_app():
    from registry.presets import PRESETS

    url, job_api = PRESETS["fal"].job_api_from_url("https://queue.fal.run/fal-ai/flux/dev")
    assert url == "https://queue.fal.run/fal-ai" and job_api["submit_path"] == "/flux/dev"
    assert job_api["poll_path"] == "/flux/requests/{UPSTREAM_ID}/status"
    assert job_api["result_path"] == "/flux/requests/{UPSTREAM_ID}"
    url, job_api = PRESETS["fal-video"].job_api_from_url("https://queue.fal.run/fal-ai/fast-svd")
    assert job_api["submit_path"] == "/fast-svd" and job_api["output_extract"] == "video.url"
