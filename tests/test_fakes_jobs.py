"""The fakes of asynchronous image and video APIs, driven the way each API's reference shows
(with ``requests``, and with the ``openai`` SDK for the Videos API), so a test of the gateway
that passes against them is passing against the real shapes."""

import openai
import pytest
import requests

from tests.fake_comfyui import ComfyUIServer, text_to_image_workflow
from tests.fake_fal import FalServer
from tests.fake_jobs import JobBook, mp4_bytes, png_bytes
from tests.fake_openai_videos import OpenAIVideosServer
from tests.fake_replicate import ReplicateServer
from tests.fake_runway import RunwayServer
from tests.waiting import wait_until

TIMEOUT = 10


@pytest.fixture
def serve():
    """serve(fake) -> the fake, started on a port of its own and stopped after the test."""
    started = []

    def start(fake):
        started.append(fake.start())
        return fake

    yield start
    for fake in started:
        fake.stop()


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_book_runs_at_most_capacity_jobs_and_starts_the_next_when_one_ends():
    clock = ManualClock()
    book = JobBook(duration=3, capacity=2, clock=clock)
    jobs = [book.submit({"n": index}) for index in range(5)]
    assert [job.state for job in jobs] == ["running", "running", "queued", "queued", "queued"]
    assert [book.queue_position(job) for job in jobs[2:]] == [0, 1, 2]

    clock.now += 4  # the first two ended at +3, the next two started then, not at +4
    assert [job.state for job in book.all()] == ["succeeded", "succeeded", "running", "running", "queued"]
    assert jobs[0].finished_at == 1003.0 and jobs[2].started_at == 1003.0
    assert jobs[2].progress(clock.now) == pytest.approx(1 / 3)

    book.cancel(jobs[2].id)  # a slot frees at once and the last job takes it
    assert jobs[4].state == "running" and jobs[4].started_at == clock.now
    clock.now += 10
    assert [job.state for job in book.all()] == ["succeeded", "succeeded", "canceled", "succeeded", "succeeded"]
    assert book.max_running == 2


def test_the_book_fails_the_next_jobs_it_is_told_to():
    clock = ManualClock()
    book = JobBook(duration=1, clock=clock)
    book.fail_next = 1
    failing, passing = book.submit({}), book.submit({})
    clock.now += 2
    assert (book.look(failing.id).state, book.look(passing.id).state) == ("failed", "succeeded")
    assert failing.failure == book.failure and failing.polls == 1


def test_results_are_real_png_and_mp4_shaped_bytes_naming_their_job():
    png, mp4 = png_bytes("job a"), mp4_bytes("job a")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and b"job a" in png and png.endswith(b"IEND\xaeB`\x82")
    assert mp4[4:8] == b"ftyp" and b"mdat" in mp4 and b"job a" in mp4 and len(mp4) == 4096


def test_comfyui_queues_a_prompt_and_shows_its_output_in_the_history_then_serves_the_file(serve):
    comfy = serve(ComfyUIServer(duration=0.3))
    workflow = text_to_image_workflow("a red fox")
    queued = requests.post(f"{comfy.url}/prompt", json={"prompt": workflow, "client_id": "gw"}, timeout=TIMEOUT)
    assert queued.status_code == 200
    answer = queued.json()
    assert set(answer) == {"prompt_id", "number", "node_errors"} and answer["node_errors"] == {}
    prompt_id = answer["prompt_id"]
    assert requests.get(f"{comfy.url}/history/{prompt_id}", timeout=TIMEOUT).json() == {}
    running = requests.get(f"{comfy.url}/queue", timeout=TIMEOUT).json()["queue_running"]
    assert running[0][1] == prompt_id and running[0][3] == {"client_id": "gw"}

    def history():
        return requests.get(f"{comfy.url}/history/{prompt_id}", timeout=TIMEOUT).json().get(prompt_id)

    entry = wait_until(history, what="the prompt in ComfyUI's history", timeout=TIMEOUT)
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    image = entry["outputs"]["9"]["images"][0]
    assert image["type"] == "output" and image["subfolder"] == ""
    view = requests.get(f"{comfy.url}/view", params=image, timeout=TIMEOUT)
    assert view.status_code == 200 and view.headers["Content-Type"] == "image/png"
    assert view.content == comfy.book.jobs[prompt_id].result and prompt_id.encode() in view.content
    assert (
        requests.get(f"{comfy.url}/view", params={**image, "filename": "nope.png"}, timeout=TIMEOUT).status_code == 404
    )
    assert len(comfy.requests_about(prompt_id)) >= 2
    assert requests.get(f"{comfy.url}/system_stats", timeout=TIMEOUT).json()["devices"][0]["type"] == "cuda"


def test_comfyui_refuses_a_prompt_without_outputs_in_its_error_shape(serve):
    comfy = serve(ComfyUIServer())
    workflow = text_to_image_workflow("x")
    del workflow["9"]
    answer = requests.post(f"{comfy.url}/prompt", json={"prompt": workflow}, timeout=TIMEOUT)
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "prompt_no_outputs" and "node_errors" in answer.json()
    missing = requests.post(f"{comfy.url}/prompt", json={}, timeout=TIMEOUT)
    assert missing.status_code == 400 and missing.json()["error"]["type"] == "no_prompt"


def test_comfyui_deletes_a_pending_prompt_and_interrupts_the_running_one(serve):
    comfy = serve(ComfyUIServer(duration=30, capacity=1))
    first, second = (
        requests.post(f"{comfy.url}/prompt", json={"prompt": text_to_image_workflow(text)}, timeout=TIMEOUT).json()
        for text in ("one", "two")
    )
    queue = requests.get(f"{comfy.url}/queue", timeout=TIMEOUT).json()
    assert [item[1] for item in queue["queue_pending"]] == [second["prompt_id"]]
    requests.post(f"{comfy.url}/queue", json={"delete": [second["prompt_id"]]}, timeout=TIMEOUT).raise_for_status()
    assert requests.get(f"{comfy.url}/queue", timeout=TIMEOUT).json()["queue_pending"] == []
    requests.post(f"{comfy.url}/interrupt", json={"prompt_id": first["prompt_id"]}, timeout=TIMEOUT).raise_for_status()
    entry = requests.get(f"{comfy.url}/history/{first['prompt_id']}", timeout=TIMEOUT).json()[first["prompt_id"]]
    assert entry["status"]["status_str"] == "error" and entry["status"]["messages"][-1][0] == "execution_interrupted"
    assert requests.get(f"{comfy.url}/history/{second['prompt_id']}", timeout=TIMEOUT).json() == {}


def test_comfyui_reports_a_failed_prompt_with_an_execution_error(serve):
    comfy = serve(ComfyUIServer(duration=0.1))
    comfy.book.fail_next = 1
    prompt_id = requests.post(
        f"{comfy.url}/prompt", json={"prompt": text_to_image_workflow("x")}, timeout=TIMEOUT
    ).json()["prompt_id"]
    entry = wait_until(
        lambda: requests.get(f"{comfy.url}/history/{prompt_id}", timeout=TIMEOUT).json().get(prompt_id),
        what="the failed prompt in the history",
        timeout=TIMEOUT,
    )
    assert entry["status"]["status_str"] == "error" and entry["outputs"] == {}
    kind, details = entry["status"]["messages"][-1]
    assert kind == "execution_error" and details["exception_message"] == comfy.book.failure


def test_replicate_runs_a_prediction_from_starting_to_succeeded_with_output_urls(serve):
    replicate = serve(ReplicateServer(duration=0.5, start_delay=0.2))
    headers = {"Authorization": f"Bearer {replicate.token}"}
    created = requests.post(
        f"{replicate.url}/v1/models/black-forest-labs/flux-schnell/predictions",
        json={"input": {"prompt": "a red fox"}},
        headers=headers,
        timeout=TIMEOUT,
    )
    assert created.status_code == 201
    prediction = created.json()
    assert prediction["status"] == "starting" and prediction["model"] == "black-forest-labs/flux-schnell"
    assert prediction["urls"]["get"] == f"{replicate.url}/v1/predictions/{prediction['id']}"

    def get():
        return requests.get(prediction["urls"]["get"], headers=headers, timeout=TIMEOUT).json()

    wait_until(lambda: get()["status"] == "processing", what="the prediction processing", timeout=TIMEOUT)
    done = wait_until(
        lambda: (p := get())["status"] == "succeeded" and p, what="a succeeded prediction", timeout=TIMEOUT
    )
    assert done["completed_at"] and done["error"] is None and done["metrics"]["predict_time"] == 0.5
    assert "100%" in done["logs"]
    image = requests.get(done["output"][0], timeout=TIMEOUT)
    assert image.headers["Content-Type"] == "image/png" and prediction["id"].encode() in image.content


def test_replicate_holds_the_answer_with_prefer_wait_and_cancels(serve):
    replicate = serve(ReplicateServer(duration=0.3, media="video"))
    headers = {"Authorization": f"Bearer {replicate.token}", "Prefer": "wait=5"}
    waited = requests.post(
        f"{replicate.url}/v1/predictions",
        json={"version": "owner/model:abc123", "input": {"prompt": "x"}},
        headers=headers,
        timeout=TIMEOUT,
    ).json()
    assert waited["status"] == "succeeded" and isinstance(waited["output"], str) and waited["version"] == "abc123"

    replicate.book.duration = 30
    headers = {"Authorization": f"Bearer {replicate.token}"}
    created = requests.post(
        f"{replicate.url}/v1/predictions", json={"version": "abc", "input": {}}, headers=headers, timeout=TIMEOUT
    ).json()
    canceled = requests.post(created["urls"]["cancel"], headers=headers, timeout=TIMEOUT)
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"


def test_replicate_answers_errors_as_problem_details(serve):
    replicate = serve(ReplicateServer())
    unauthenticated = requests.post(f"{replicate.url}/v1/predictions", json={}, timeout=TIMEOUT)
    assert unauthenticated.status_code == 401 and unauthenticated.json()["title"] == "Unauthenticated"
    headers = {"Authorization": f"Bearer {replicate.token}"}
    invalid = requests.post(f"{replicate.url}/v1/predictions", json={"input": {}}, headers=headers, timeout=TIMEOUT)
    assert invalid.status_code == 422 and invalid.headers["Content-Type"] == "application/problem+json"
    assert invalid.json()["invalid_fields"][0]["field"] == "version"
    replicate.book.reject_status = 429
    throttled = requests.post(
        f"{replicate.url}/v1/predictions", json={"version": "v", "input": {}}, headers=headers, timeout=TIMEOUT
    )
    assert throttled.status_code == 429 and throttled.json()["status"] == 429
    missing = requests.get(f"{replicate.url}/v1/predictions/nope", headers=headers, timeout=TIMEOUT)
    assert missing.status_code == 404


def test_runway_goes_from_throttled_to_running_with_progress_to_succeeded(serve):
    runway = serve(RunwayServer(duration=0.6, capacity=1))
    headers = {"Authorization": f"Bearer {runway.api_key}", "X-Runway-Version": "2024-11-06"}
    body = {"model": "gen4_turbo", "promptImage": "https://example.com/a.png", "ratio": "1280:720", "duration": 5}
    first, second = (
        requests.post(f"{runway.url}/v1/image_to_video", json=body, headers=headers, timeout=TIMEOUT).json()["id"]
        for _ in range(2)
    )

    def task(task_id):
        return requests.get(f"{runway.url}/v1/tasks/{task_id}", headers=headers, timeout=TIMEOUT).json()

    assert task(first)["status"] == "RUNNING" and 0 <= task(first)["progress"] < 1
    assert task(second)["status"] == "THROTTLED"
    done = wait_until(lambda: (t := task(second))["status"] == "SUCCEEDED" and t, what="the task done", timeout=TIMEOUT)
    assert set(done) == {"id", "status", "createdAt", "output"}
    video = requests.get(done["output"][0], timeout=TIMEOUT)
    assert video.headers["Content-Type"] == "video/mp4" and video.content[4:8] == b"ftyp"
    assert [seen.method for seen in runway.requests_about(second)].count("GET") >= 2


def test_runway_requires_its_version_header_and_validates_the_body(serve):
    runway = serve(RunwayServer())
    auth = {"Authorization": f"Bearer {runway.api_key}"}
    no_version = requests.post(f"{runway.url}/v1/text_to_video", json={}, headers=auth, timeout=TIMEOUT)
    assert no_version.status_code == 400 and "X-Runway-Version" in no_version.json()["error"]
    headers = {**auth, "X-Runway-Version": "2024-11-06"}
    invalid = requests.post(f"{runway.url}/v1/text_to_video", json={"model": "veo3"}, headers=headers, timeout=TIMEOUT)
    assert invalid.status_code == 400 and {issue["path"][0] for issue in invalid.json()["issues"]} == {
        "promptText",
        "ratio",
    }


def test_runway_cancels_a_running_task_with_delete_and_reports_failures(serve):
    runway = serve(RunwayServer(duration=30))
    headers = {"Authorization": f"Bearer {runway.api_key}", "X-Runway-Version": "2024-11-06"}
    body = {"model": "veo3", "promptText": "a fox", "ratio": "1280:720"}
    task_id = requests.post(f"{runway.url}/v1/text_to_video", json=body, headers=headers, timeout=TIMEOUT).json()["id"]
    deleted = requests.delete(f"{runway.url}/v1/tasks/{task_id}", headers=headers, timeout=TIMEOUT)
    assert deleted.status_code == 204 and deleted.content == b""
    assert requests.get(f"{runway.url}/v1/tasks/{task_id}", headers=headers, timeout=TIMEOUT).json()["status"] == (
        "CANCELLED"
    )
    runway.book.duration, runway.book.fail_next = 0.1, 1
    failing = requests.post(f"{runway.url}/v1/text_to_video", json=body, headers=headers, timeout=TIMEOUT).json()["id"]
    failed = wait_until(
        lambda: (
            (t := requests.get(f"{runway.url}/v1/tasks/{failing}", headers=headers, timeout=TIMEOUT).json())["status"]
            == "FAILED"
            and t
        ),
        what="the task failed",
        timeout=TIMEOUT,
    )
    assert failed["failure"] == runway.book.failure and failed["failureCode"]


def test_fal_queues_a_request_with_its_position_then_completes_it(serve):
    fal = serve(FalServer(duration=0.5, capacity=1))
    headers = {"Authorization": f"Key {fal.api_key}"}
    first, second = (
        requests.post(f"{fal.url}/fal-ai/flux/dev", json={"prompt": "a fox"}, headers=headers, timeout=TIMEOUT).json()
        for _ in range(2)
    )
    assert second["status_url"] == f"{fal.url}/fal-ai/flux/requests/{second['request_id']}/status"
    assert (first["queue_position"], second["queue_position"]) == (0, 0)  # the first is already running
    status = requests.get(second["status_url"], headers=headers, timeout=TIMEOUT).json()
    assert status["status"] == "IN_QUEUE" and status["queue_position"] == 0

    def status_of(request):
        return requests.get(request["status_url"], params={"logs": 1}, headers=headers, timeout=TIMEOUT).json()

    assert status_of(first)["status"] == "IN_PROGRESS" and status_of(first)["logs"]
    early = requests.get(second["response_url"], headers=headers, timeout=TIMEOUT)
    assert early.status_code == 400
    wait_until(lambda: status_of(second)["status"] == "COMPLETED", what="the request completed", timeout=TIMEOUT)
    result = requests.get(second["response_url"], headers=headers, timeout=TIMEOUT).json()
    image = requests.get(result["images"][0]["url"], timeout=TIMEOUT)
    assert image.headers["Content-Type"] == "image/png" and second["request_id"].encode() in image.content


def test_fal_cancels_a_queued_request_and_refuses_a_completed_one(serve):
    fal = serve(FalServer(duration=30, media="video"))
    headers = {"Authorization": f"Key {fal.api_key}"}
    request = requests.post(f"{fal.url}/fal-ai/wan/t2v", json={"prompt": "x"}, headers=headers, timeout=TIMEOUT).json()
    canceled = requests.put(request["cancel_url"], headers=headers, timeout=TIMEOUT)
    assert canceled.status_code == 202 and canceled.json() == {"status": "CANCELLATION_REQUESTED"}
    again = requests.put(request["cancel_url"], headers=headers, timeout=TIMEOUT)
    assert again.status_code == 400 and again.json() == {"status": "ALREADY_COMPLETED"}
    assert requests.post(f"{fal.url}/fal-ai/wan", json={}, headers=headers, timeout=TIMEOUT).status_code == 422
    assert requests.post(f"{fal.url}/fal-ai/wan", json={"prompt": "x"}, timeout=TIMEOUT).status_code == 401


# The SDK still ships the resource but warns that OpenAI's own service closed (2026-09-24).
@pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")
def test_openai_videos_serves_the_sdks_videos_resource(serve):
    videos = serve(OpenAIVideosServer(duration=0.5))
    client = openai.OpenAI(api_key=videos.api_key, base_url=f"{videos.url}/v1", max_retries=0, timeout=TIMEOUT)
    video = client.videos.create(
        model="sora-2",
        prompt="a fox in the snow",
        seconds="8",
        size="1280x720",
        input_reference=("ref.png", png_bytes("r")),
    )
    assert video.status == "queued" or video.status == "in_progress"
    assert (video.object, video.seconds, video.size, video.progress) == ("video", "8", "1280x720", 0)
    assert videos.book.jobs[video.id].extra["input_reference"][1] == png_bytes("r")
    done = wait_until(
        lambda: (v := client.videos.retrieve(video.id)).status == "completed" and v,
        what="the video completed",
        timeout=TIMEOUT,
    )
    assert done.progress == 100 and done.completed_at and done.expires_at > done.completed_at
    content = client.videos.download_content(video.id)
    assert content.read() == videos.book.jobs[video.id].result
    page = client.videos.list(limit=1)
    assert [item.id for item in page.data] == [video.id]
    deleted = client.videos.delete(video.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (video.id, "video.deleted", True)
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(video.id)


def test_openai_videos_takes_json_pages_a_list_serves_ranges_and_reports_failures(serve):
    videos = serve(OpenAIVideosServer(duration=0.1))
    headers = {"Authorization": f"Bearer {videos.api_key}"}
    videos.book.fail_next = 1
    ids = [
        requests.post(f"{videos.url}/v1/videos", json={"prompt": f"p{n}"}, headers=headers, timeout=TIMEOUT).json()[
            "id"
        ]
        for n in range(3)
    ]
    first = requests.get(
        f"{videos.url}/v1/videos", params={"limit": 2, "order": "asc"}, headers=headers, timeout=TIMEOUT
    )
    assert [item["id"] for item in first.json()["data"]] == ids[:2] and first.json()["has_more"] is True
    rest = requests.get(
        f"{videos.url}/v1/videos", params={"after": ids[1], "order": "asc"}, headers=headers, timeout=TIMEOUT
    ).json()
    assert [item["id"] for item in rest["data"]] == ids[2:] and rest["has_more"] is False

    def video(video_id):
        return requests.get(f"{videos.url}/v1/videos/{video_id}", headers=headers, timeout=TIMEOUT).json()

    failed = wait_until(
        lambda: (v := video(ids[0]))["status"] == "failed" and v, what="a failed video", timeout=TIMEOUT
    )
    assert failed["error"]["message"] == videos.book.failure and failed["error"]["code"]
    wait_until(lambda: video(ids[1])["status"] == "completed", what="a completed video", timeout=TIMEOUT)
    whole = videos.book.jobs[ids[1]].result
    part = requests.get(
        f"{videos.url}/v1/videos/{ids[1]}/content", headers={**headers, "Range": "bytes=100-199"}, timeout=TIMEOUT
    )
    assert part.status_code == 206 and part.content == whole[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
    beyond = requests.get(
        f"{videos.url}/v1/videos/{ids[1]}/content", headers={**headers, "Range": "bytes=99999-"}, timeout=TIMEOUT
    )
    assert beyond.status_code == 416


def test_openai_videos_refuses_bad_values_in_openais_error_shape(serve):
    videos = serve(OpenAIVideosServer())
    headers = {"Authorization": f"Bearer {videos.api_key}"}
    bad = requests.post(
        f"{videos.url}/v1/videos", json={"prompt": "x", "seconds": "5"}, headers=headers, timeout=TIMEOUT
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "seconds" and bad.json()["error"]["type"] == "invalid_request_error"
    missing = requests.post(f"{videos.url}/v1/videos", json={}, headers=headers, timeout=TIMEOUT)
    assert missing.json()["error"]["code"] == "missing_required_parameter"
    unauthenticated = requests.get(f"{videos.url}/v1/videos", timeout=TIMEOUT)
    assert unauthenticated.status_code == 401 and unauthenticated.json()["error"]["code"] == "invalid_api_key"
