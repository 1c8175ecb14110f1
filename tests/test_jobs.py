"""Image and video jobs through /v1/videos and /v1/images/jobs, with the runner in this process,
against fakes of ComfyUI and of a /v1/videos API (tests/fake_comfyui.py, fake_openai_videos.py)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs.models import Job, JobStatus
from jobs.runner import JobRunner
from jobs.services import jobs_prune
from registry.models import Worker
from tests.conftest import bearer
from tests.fake_comfyui import ComfyUIServer
from tests.fake_jobs import png_bytes
from tests.fake_openai_videos import OpenAIVideosServer
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

VIDEO_KEY = "sk-test-videos"


@pytest.fixture(autouse=True)
def results_in_tmp(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "job_results": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "job_results")},
        },
    }
    settings.MMM_JOB_POLL_MIN_SECONDS = 0.05
    settings.MMM_JOB_EARLY_POLL_SECONDS = 0.05


@pytest.fixture
def runner():
    made = JobRunner(threads=4)
    yield made
    made.close()


@pytest.fixture
def servers():
    started = []

    def start(server):
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


def register(api, **fields) -> dict:
    response = api.post("/api/server/register", fields, format="json")
    assert response.status_code in (200, 201), response.content
    return response.json()


def register_comfyui(api, server, *, model="sdxl", capacity=None) -> dict:
    return register(api, model_name=model, preset="comfyui", base_url=server.url, capacity=capacity)


def register_videos(api, server, *, model="wan-video", capacity=None) -> dict:
    return register(
        api,
        model_name=model,
        preset="openai-videos",
        base_url=server.url + "/v1",
        api_key=VIDEO_KEY,
        upstream_model="sora-2",
        capacity=capacity,
    )


def create(api, path="/v1/videos", headers=None, **fields):
    response = api.post(path, fields, format="json", **(headers or {}))
    assert response.status_code == 200, response.content
    return response.json()


def run_until(runner, condition, *, what: str, timeout: float = 30):
    def step():
        runner.run_pass()
        return condition()

    return wait_until(step, timeout=timeout, what=what, poll=0.02)


def status_of(public_id: str) -> str:
    return Job.objects.get(public_id=public_id).status


def test_an_image_job_on_a_comfyui_worker_registered_by_preset_completes_and_serves_the_png(api, servers, runner):
    comfy = servers(ComfyUIServer(duration=0.2))
    register_comfyui(api, comfy)
    job = create(api, "/v1/images/jobs", model="sdxl", prompt="a lighthouse at dusk", size="640x480")
    assert job["object"] == "image.job"
    assert job["status"] == "queued" and job["queue_position"] == 1 and job["id"].startswith("imgjob_")

    run_until(runner, lambda: status_of(job["id"]) == JobStatus.COMPLETED, what="the image job to complete")

    submitted = comfy.seen[[seen.path for seen in comfy.seen].index("/prompt")].json
    assert submitted["prompt"]["6"]["inputs"]["text"] == "a lighthouse at dusk"
    assert submitted["prompt"]["5"]["inputs"]["width"] == 640  # {WIDTH} alone in its string: a number
    assert submitted["client_id"] == job["id"]
    shown = api.get(f"/v1/images/jobs/{job['id']}").json()
    assert shown["status"] == "completed" and shown["progress"] == 100 and shown["expires_at"]
    content = api.get(f"/v1/images/jobs/{job['id']}/content")
    upstream_id = Job.objects.get(public_id=job["id"]).upstream_id
    assert content.status_code == 200 and content["Content-Type"] == "image/png"
    assert b"".join(content.streaming_content) == png_bytes(f"job {upstream_id}")


def test_a_video_job_on_an_openai_videos_worker_completes_with_progress_and_serves_ranges(api, servers, runner):
    videos = servers(OpenAIVideosServer(duration=0.3))
    register_videos(api, videos)
    job = create(api, model="wan-video", prompt="a fox in snow", seconds=8, size="1280x720")
    assert job["object"] == "video" and job["seconds"] == "8" and job["size"] == "1280x720"

    run_until(runner, lambda: status_of(job["id"]) == JobStatus.COMPLETED, what="the video job to complete")

    sent = videos.upstream.hits("/v1/videos")[0]
    assert sent.json == {"model": "sora-2", "prompt": "a fox in snow", "size": "1280x720", "seconds": "8"}
    upstream = videos.book.look(Job.objects.get(public_id=job["id"]).upstream_id, poll=False)
    whole = api.get(f"/v1/videos/{job['id']}/content")
    assert b"".join(whole.streaming_content) == upstream.result
    part = api.get(f"/v1/videos/{job['id']}/content", HTTP_RANGE="bytes=10-19")
    assert part.status_code == 206 and part["Content-Range"] == f"bytes 10-19/{len(upstream.result)}"
    assert b"".join(part.streaming_content) == upstream.result[10:20]
    assert api.get(f"/v1/videos/{job['id']}/content", HTTP_RANGE="bytes=999999-").status_code == 416
    assert api.get(f"/v1/videos/{job['id']}/content", {"variant": "thumbnail"}).status_code == 404


def test_a_clients_get_polls_a_running_job_early_and_sees_its_progress(api, servers, runner, settings):
    videos = servers(OpenAIVideosServer(duration=2.0))
    register_videos(api, videos)
    job = create(api, model="wan-video", prompt="slow")
    run_until(runner, lambda: status_of(job["id"]) == JobStatus.RUNNING, what="the job to be submitted")
    settings.MMM_JOB_POLL_MIN_SECONDS = 3600  # the runner would not poll again: only the GET does
    Job.objects.filter(public_id=job["id"]).update(next_poll_at=timezone.now() + timedelta(hours=1))

    seen = wait_until(
        lambda: (
            (body := api.get(f"/v1/videos/{job['id']}").json())["status"] == "in_progress"
            and body["progress"] > 0
            and body
        ),
        timeout=10,
        what="a GET to show progress from an early poll",
        poll=0.1,
    )
    assert 0 < seen["progress"] < 100


def test_another_key_gets_404_for_a_job_and_does_not_see_it_in_its_list(api, servers, require_auth, make_key):
    comfy = servers(ComfyUIServer())
    admin = make_key("admin")
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {admin}")
    register_comfyui(api, comfy)
    api.credentials()
    mine, theirs = make_key("inference", name="mine"), make_key("inference", name="theirs")
    job = create(api, "/v1/images/jobs", headers=bearer(mine), model="sdxl", prompt="mine")

    for path in ("", "/content"):
        response = api.get(f"/v1/images/jobs/{job['id']}{path}", **bearer(theirs))
        assert response.status_code == 404, response.content
        assert response.json()["error"]["code"] == "job_not_found"
    assert api.delete(f"/v1/images/jobs/{job['id']}", **bearer(theirs)).status_code == 404
    assert api.get("/v1/images/jobs", **bearer(theirs)).json()["data"] == []
    assert [row["id"] for row in api.get("/v1/images/jobs", **bearer(mine)).json()["data"]] == [job["id"]]
    assert api.get(f"/v1/images/jobs/{job['id']}", **bearer(admin)).status_code == 200
    assert api.get(f"/v1/videos/{job['id']}", **bearer(mine)).status_code == 404  # not a video


def test_the_list_is_paginated_by_cursor(api, servers):
    register_comfyui(api, servers(ComfyUIServer()))
    ids = [create(api, "/v1/images/jobs", model="sdxl", prompt=f"p{n}")["id"] for n in range(5)]
    first = api.get("/v1/images/jobs", {"limit": 2}).json()
    assert [row["id"] for row in first["data"]] == ids[::-1][:2] and first["has_more"] is True
    second = api.get("/v1/images/jobs", {"limit": 2, "after": first["last_id"]}).json()
    assert [row["id"] for row in second["data"]] == ids[::-1][2:4]
    oldest = api.get("/v1/images/jobs", {"order": "asc", "limit": 10}).json()
    assert [row["id"] for row in oldest["data"]] == ids and oldest["has_more"] is False
    bad = api.get("/v1/images/jobs", {"limit": 0})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"


def test_no_worker_runs_more_jobs_than_its_capacity_and_queue_positions_count_down(api, servers, runner):
    comfy = servers(ComfyUIServer(duration=0.3))
    register_comfyui(api, comfy, capacity=2)
    ids = [create(api, "/v1/images/jobs", model="sdxl", prompt=f"p{n}")["id"] for n in range(6)]
    assert [api.get(f"/v1/images/jobs/{i}").json()["queue_position"] for i in ids] == [1, 2, 3, 4, 5, 6]
    runner.run_pass()
    assert Job.objects.filter(status__in=(JobStatus.SUBMITTING, JobStatus.RUNNING)).count() == 2
    assert api.get(f"/v1/images/jobs/{ids[-1]}").json()["queue_position"] == 4

    run_until(runner, lambda: not Job.objects.exclude(status=JobStatus.COMPLETED).exists(), what="all 6 to complete")
    assert comfy.book.max_running <= 2 and len(comfy.book.jobs) == 6


def test_the_queue_is_fair_across_keys(api, servers, runner, make_key):
    comfy = servers(ComfyUIServer(duration=5))
    register_comfyui(api, comfy, capacity=1)
    busy, other = make_key("inference", name="busy"), make_key("inference", name="other")
    for n in range(3):
        create(api, "/v1/images/jobs", headers=bearer(busy), model="sdxl", prompt=f"busy {n}")
    late = create(api, "/v1/images/jobs", headers=bearer(other), model="sdxl", prompt="other")
    runner.run_pass()  # the busy key's first job takes the one slot
    Job.objects.filter(status=JobStatus.RUNNING).update(status=JobStatus.COMPLETED)
    runner.run_pass()
    assert status_of(late["id"]) in (JobStatus.SUBMITTING, JobStatus.RUNNING)  # before busy's second and third


def test_submission_fails_over_to_another_worker_and_polls_stay_with_the_one_that_accepted(api, servers, runner):
    down, up = servers(ComfyUIServer(duration=0.2)), servers(ComfyUIServer(duration=0.2))
    down.book.reject_status = 503
    register_comfyui(api, down)
    register_comfyui(api, up)
    job = create(api, "/v1/images/jobs", model="sdxl", prompt="p")

    run_until(runner, lambda: status_of(job["id"]) == JobStatus.COMPLETED, what="the job to complete elsewhere")
    accepted = Job.objects.get(public_id=job["id"])
    assert accepted.worker.req_url_template == up.url and accepted.submit_attempts >= 1
    assert not down.requests_about(accepted.upstream_id)  # every poll and fetch went to `up`
    assert up.requests_about(accepted.upstream_id)


def test_a_worker_that_refuses_the_submission_fails_the_job_with_its_message(api, servers, runner):
    videos = servers(OpenAIVideosServer())
    register_videos(api, videos)
    job = create(api, model="wan-video", prompt="p", seconds="5")  # the fake takes only 4, 8, 12

    run_until(runner, lambda: status_of(job["id"]) == JobStatus.FAILED, what="the job to fail")
    shown = api.get(f"/v1/videos/{job['id']}").json()
    assert shown["status"] == "failed" and shown["error"]["code"] == "upstream_rejected"
    assert "Invalid value: '5'" in shown["error"]["message"] and VIDEO_KEY not in shown["error"]["message"]
    assert api.get(f"/v1/videos/{job['id']}/content").status_code == 409


def test_a_generation_that_fails_on_the_worker_fails_the_job_with_the_workers_reason(api, servers, runner):
    comfy = servers(ComfyUIServer(duration=0.1))
    comfy.book.fail_next = 1
    register_comfyui(api, comfy)
    job = create(api, "/v1/images/jobs", model="sdxl", prompt="p")
    run_until(runner, lambda: status_of(job["id"]) == JobStatus.FAILED, what="the job to fail")
    error = api.get(f"/v1/images/jobs/{job['id']}").json()["error"]
    assert error["code"] == "generation_failed" and "ran out of memory" in error["message"]


def test_a_job_whose_worker_stops_answering_fails_after_the_setting_saying_so(api, servers, runner, settings):
    settings.MMM_JOB_WORKER_LOST_SECONDS = 1.0
    videos = servers(OpenAIVideosServer(duration=30))
    register_videos(api, videos)
    job = create(api, model="wan-video", prompt="p")
    run_until(runner, lambda: status_of(job["id"]) == JobStatus.RUNNING, what="the job to be submitted")
    videos.book.poll_status = 500

    run_until(runner, lambda: status_of(job["id"]) == JobStatus.FAILED, what="the job to fail as lost")
    failed = Job.objects.get(public_id=job["id"])
    assert failed.error_code == "worker_lost" and "has not answered about the job" in failed.error


def test_a_job_whose_worker_was_taken_offline_fails_saying_so(api, servers, runner):
    videos = servers(OpenAIVideosServer(duration=30))
    register_videos(api, videos)
    job = create(api, model="wan-video", prompt="p")
    run_until(runner, lambda: status_of(job["id"]) == JobStatus.RUNNING, what="the job to be submitted")
    Worker.objects.all().delete()
    Job.objects.filter(public_id=job["id"]).update(next_poll_at=timezone.now())

    run_until(runner, lambda: status_of(job["id"]) == JobStatus.FAILED, what="the job to fail")
    assert "taken offline" in Job.objects.get(public_id=job["id"]).error


def test_delete_cancels_on_the_worker_and_removes_the_result(api, servers, runner):
    videos = servers(OpenAIVideosServer(duration=30))
    register_videos(api, videos)
    running = create(api, model="wan-video", prompt="long")
    run_until(runner, lambda: status_of(running["id"]) == JobStatus.RUNNING, what="the job to be submitted")
    upstream_id = Job.objects.get(public_id=running["id"]).upstream_id

    deleted = api.delete(f"/v1/videos/{running['id']}")
    assert deleted.json() == {"id": running["id"], "object": "video.deleted", "deleted": True}
    assert videos.book.look(upstream_id, poll=False) is None  # the fake forgets a deleted video
    assert api.get(f"/v1/videos/{running['id']}").status_code == 404

    videos.book.duration = 0.1
    done = create(api, model="wan-video", prompt="short")
    run_until(runner, lambda: status_of(done["id"]) == JobStatus.COMPLETED, what="the second job to complete")
    stored = Job.objects.get(public_id=done["id"]).result_name
    from jobs.results import result_storage

    assert result_storage().exists(stored)
    api.delete(f"/v1/videos/{done['id']}")
    assert not result_storage().exists(stored)


def test_finished_jobs_are_pruned_with_their_results_at_expiry(api, servers, runner):
    from jobs.results import result_storage

    register_comfyui(api, servers(ComfyUIServer(duration=0.1)))
    job = create(api, "/v1/images/jobs", model="sdxl", prompt="p")
    run_until(runner, lambda: status_of(job["id"]) == JobStatus.COMPLETED, what="the job to complete")
    stored = Job.objects.get(public_id=job["id"]).result_name
    assert jobs_prune() == 0

    assert jobs_prune(now=timezone.now() + timedelta(days=2)) == 1
    assert not Job.objects.filter(public_id=job["id"]).exists() and not result_storage().exists(stored)
    assert api.get(f"/v1/images/jobs/{job['id']}").status_code == 404


def test_a_job_a_dead_runner_held_is_taken_over_when_its_lease_runs_out(api, servers, settings):
    settings.MMM_JOB_LEASE_SECONDS = 1.0
    comfy = servers(ComfyUIServer(duration=0.1))
    register_comfyui(api, comfy)
    job = create(api, "/v1/images/jobs", model="sdxl", prompt="p")
    now = timezone.now()
    from jobs import scheduler

    [claimed] = scheduler.claim_submissions(runner_id="dead runner", now=now)  # and then it died
    assert claimed.public_id == job["id"]
    later = JobRunner(threads=1, clock=lambda: timezone.now() + timedelta(seconds=120))
    try:
        run_until(later, lambda: status_of(job["id"]) == JobStatus.COMPLETED, what="another runner to finish it")
    finally:
        later.close()
    assert len(comfy.book.jobs) == 1


def test_a_pass_with_nothing_to_do_only_reads(api, servers, runner):
    # The looping runner makes one or two passes a second; while no job waits, none of them may
    # take the database's write lock (on SQLite the one the request log's writer needs).
    comfy = servers(ComfyUIServer(duration=0.1))
    register_comfyui(api, comfy)
    job = create(api, "/v1/images/jobs", model="sdxl", prompt="p")
    run_until(runner, lambda: status_of(job["id"]) == JobStatus.COMPLETED, what="the job to finish")
    with CaptureQueriesContext(connection) as seen:
        summary = runner.run_pass()
    assert not summary.did_work
    statements = [query["sql"].split(None, 1)[0].upper() for query in seen.captured_queries]
    assert statements and set(statements) == {"SELECT"}, seen.captured_queries


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"prompt": "p"}, "model"),
        ({"model": "sdxl"}, "prompt"),
        ({"model": "sdxl", "prompt": 3}, "prompt"),
        ({"model": "sdxl", "prompt": "p", "size": "big"}, "size"),
        ({"model": "sdxl", "prompt": "p", "seconds": "-1"}, "seconds"),
        ({"model": "sdxl", "prompt": "p", "input_reference": "ftp://x"}, "input_reference"),
    ],
)
def test_a_bad_job_request_is_a_400_naming_the_field(api, servers, fields, param):
    register_comfyui(api, servers(ComfyUIServer()))
    response = api.post("/v1/videos", fields, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == param


def test_a_model_without_job_workers_is_refused_clearly(api, upstream):
    assert api.post("/v1/videos", {"model": "nope", "prompt": "p"}, format="json").status_code == 404
    register(api, model_name="chat", req_url_template=upstream.url("/"), body={"q": "{USER_PROMPT}"})
    refused = api.post("/v1/videos", {"model": "chat", "prompt": "p"}, format="json")
    assert refused.status_code == 400 and "no job workers" in refused.json()["error"]["message"]


def test_a_job_model_asked_for_a_chat_completion_says_to_use_the_jobs_api(api, servers):
    register_comfyui(api, servers(ComfyUIServer()))
    response = api.post(
        "/v1/chat/completions", {"model": "sdxl", "messages": [{"role": "user", "content": "hi"}]}, format="json"
    )
    assert response.status_code == 400 and "/v1/images/jobs" in response.json()["error"]["message"]


def test_a_multipart_create_with_an_input_reference_file_sends_it_as_a_data_url(api, servers, runner):
    comfy = servers(ComfyUIServer(duration=0.1))
    workflow_with_reference = {
        "prompt": {"9": {"class_type": "SaveImage", "inputs": {"t": "{USER_PROMPT}", "ref": "{INPUT_REFERENCE}"}}}
    }
    register(api, model_name="i2v", preset="comfyui", base_url=comfy.url, body=workflow_with_reference)
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("ref.png", png_bytes("ref"), content_type="image/png")
    response = api.post(
        "/v1/videos", {"model": "i2v", "prompt": "move", "seconds": "4", "input_reference": upload}, format="multipart"
    )
    assert response.status_code == 200, response.content
    run_until(runner, lambda: comfy.upstream.hits("/prompt"), what="the submission")
    sent = comfy.upstream.hits("/prompt")[0].json["prompt"]["9"]["inputs"]
    assert sent["t"] == "move" and sent["ref"].startswith("data:image/png;base64,")


def test_metrics_count_jobs_by_model_and_status_and_the_slots_of_each_job_worker(api, servers, runner, client):
    register_comfyui(api, servers(ComfyUIServer(duration=30)), capacity=2)
    for n in range(3):
        create(api, "/v1/images/jobs", model="sdxl", prompt=f"p{n}")
    runner.run_pass()

    text = client.get("/metrics").content.decode()
    assert 'mmm_jobs{model="sdxl",status="running"} 2.0' in text
    assert 'mmm_jobs{model="sdxl",status="queued"} 1.0' in text
    assert 'mmm_job_worker_slots_used{model="sdxl",worker="' in text and "mmm_job_oldest_queued_seconds" in text
    assert 'mmm_job_worker_capacity{model="sdxl",worker="' in text


def test_the_dashboard_has_a_jobs_panel_with_counts_per_model(api, servers, runner, admin_client):
    comfy = servers(ComfyUIServer(duration=0.1))
    register_comfyui(api, comfy)
    done = create(api, "/v1/images/jobs", model="sdxl", prompt="p")
    run_until(runner, lambda: status_of(done["id"]) == JobStatus.COMPLETED, what="the job to complete")
    comfy.book.fail_next = 1
    failed = create(api, "/v1/images/jobs", model="sdxl", prompt="p")
    run_until(runner, lambda: status_of(failed["id"]) == JobStatus.FAILED, what="the job to fail")
    create(api, "/v1/images/jobs", model="sdxl", prompt="waiting")  # queued: no pass after it

    page = admin_client.get("/admin/dashboard/").content.decode()
    panel = page[page.index('id="console-jobs"') :]
    start = panel.index(">sdxl<")
    row = panel[start : panel.index("</tr>", start)]
    assert [cell.split("<")[0] for cell in row.split('class="numeric">')[1:5]] == ["1", "0", "1", "1"]
    assert "Jobs queued in the gateway" in page and "Jobs failed per 1 min" in page
    assert admin_client.get("/admin/jobs/job/").status_code == 200
    assert done["id"] in admin_client.get("/admin/jobs/job/").content.decode()


def test_a_completed_video_job_is_charged_once_for_its_seconds_and_a_failed_one_not_at_all(api, servers, runner):
    from decimal import Decimal

    from usage.models import Price, UsageRecord

    Price.objects.create(
        model_name="wan-video", effective_from=timezone.now() - timedelta(days=1), per_video_second="0.10"
    )
    videos = servers(OpenAIVideosServer(duration=0.2))
    register_videos(api, videos)
    done = create(api, model="wan-video", prompt="a fox in snow", seconds=8)
    run_until(runner, lambda: status_of(done["id"]) == JobStatus.COMPLETED, what="the video job to complete")
    videos.book.fail_next = 1
    failed = create(api, model="wan-video", prompt="a storm")
    run_until(runner, lambda: status_of(failed["id"]) == JobStatus.FAILED, what="the second job to fail")
    for _ in range(3):
        runner.run_pass()  # more passes charge nothing again

    [row] = UsageRecord.objects.filter(model_name="wan-video")
    assert row.request_id == done["id"]
    assert (row.kind, row.video_seconds, row.cost_usd) == ("video", Decimal(8), Decimal("0.80"))


def test_a_video_job_that_would_start_over_its_keys_money_budget_is_a_429_and_is_not_queued(
    api, servers, require_auth, make_key
):
    from decimal import Decimal

    from accounts.models import ApiKey
    from usage.models import Budget, Price

    Price.objects.create(
        model_name="wan-video", effective_from=timezone.now() - timedelta(days=1), per_video_second="0.10"
    )
    admin = make_key("admin")
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {admin}")
    register_videos(api, servers(OpenAIVideosServer()))
    api.credentials()
    key = make_key("inference", name="film crew")
    Budget.objects.create(api_key=ApiKey.objects.get(name="film crew"), period="day", limit_usd=Decimal("0.50"))

    refused = api.post(
        "/v1/videos", {"model": "wan-video", "prompt": "a long take", "seconds": 8}, format="json", **bearer(key)
    )
    assert refused.status_code == 429, refused.content
    error = refused.json()["error"]
    assert error["code"] == "budget_exceeded" and "0.50" in error["message"]
    assert not Job.objects.filter(prompt="a long take").exists()
    create(api, headers=bearer(key), model="wan-video", prompt="a short take", seconds=4)  # 0.40 fits


def test_queueing_a_job_wakes_the_runner_listening_on_this_host(api, servers, settings, tmp_path):
    import threading

    from jobs.wake import RunnerWake

    settings.MMM_JOB_WAKE_SOCKET = str(tmp_path / "wake.sock")
    queued = threading.Event()
    wake = RunnerWake(path=settings.MMM_JOB_WAKE_SOCKET, event=queued)
    try:
        register_comfyui(api, servers(ComfyUIServer()))
        assert not queued.is_set()

        create(api, "/v1/images/jobs", model="sdxl", prompt="a lighthouse")

        wait_until(queued.is_set, timeout=10, what="the runner's wake socket to hear of the queued job")
    finally:
        wake.close()
