"""The job protocol (inference/protocols/job.py) on the wire: a hand-written job API on a real
loopback server, with the output as base64 and as a URL on another origin; and job_api checks."""

import base64
import io

import pytest

from inference.exceptions import RetryableWorkerError, UpstreamRejected
from inference.protocols.job import COMPLETED, IN_PROGRESS, JobApi, JobProtocol, Submission
from registry.models import Worker, WorkerKind
from tests.fake_upstream import FakeUpstream

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\nfake"
SECRET = "sk-job-secret"


def job_worker(url: str, **api) -> Worker:
    job_api = {
        "submit_path": "/tasks",
        "id_extract": "task.id",
        "poll_path": "/tasks/{UPSTREAM_ID}",
        "status_extract": "task.state",
        "status_map": {"DONE": "completed", "WORKING": "in_progress", "BROKEN": "failed"},
        "progress_extract": "task.fraction",
        "progress_scale": 1,
        "error_extract": "task.why",
        "output": "base64",
        "output_extract": "task.image",
        **api,
    }
    JobApi.from_json(job_api)
    return Worker.objects.create(
        kind=WorkerKind.JOB,
        model_name="m",
        req_url_template=url,
        headers={"Authorization": f"Bearer {SECRET}"},
        body={"text": "{USER_PROMPT}", "w": "{WIDTH}", "seconds": "{SECONDS}"},
        job_api=job_api,
    )


def test_submit_poll_and_a_base64_output_with_the_status_words_mapped(upstream):
    upstream.on("/tasks", json={"task": {"id": "t-1"}})
    worker = job_worker(upstream.url("").rstrip("/"))
    protocol = JobProtocol()

    upstream_id = protocol.submit(
        worker=worker, submission=Submission(prompt="hi", job_id="j", size="64x32"), timeout=5
    )
    assert upstream_id == "t-1" and upstream.hits("/tasks")[0].json == {"text": "hi", "w": 64}

    upstream.on("/tasks/t-1", json={"task": {"state": "WORKING", "fraction": 0.42}})
    assert protocol.poll(worker=worker, upstream_id="t-1", timeout=5).status == IN_PROGRESS
    assert protocol.poll(worker=worker, upstream_id="t-1", timeout=5).progress == 42
    encoded = "data:image/png;base64," + base64.b64encode(PNG).decode()
    upstream.on("/tasks/t-1", json={"task": {"state": "DONE", "image": encoded}})
    polled = protocol.poll(worker=worker, upstream_id="t-1", timeout=5)
    assert polled.status == COMPLETED
    into = io.BytesIO()
    fetched = protocol.fetch(worker=worker, upstream_id="t-1", output=polled.output, into=into, timeout=5)
    assert into.getvalue() == PNG and fetched.content_type == "image/png"

    upstream.on("/tasks/t-1", json={"task": {"state": "BROKEN", "why": f"bad key {SECRET}"}})
    failed = protocol.poll(worker=worker, upstream_id="t-1", timeout=5)
    assert failed.status == "failed" and SECRET not in failed.error


def test_an_output_url_on_another_origin_gets_none_of_the_workers_headers(upstream):
    cdn = FakeUpstream().start()
    try:
        cdn.on("/file.png", body=PNG, headers={"Content-Type": "image/png"})
        upstream.on("/own.png", body=PNG, headers={"Content-Type": "image/png"})
        worker = job_worker(upstream.url("").rstrip("/"), output="url")
        protocol = JobProtocol()
        protocol.fetch(worker=worker, upstream_id="t", output=cdn.url("/file.png"), into=io.BytesIO(), timeout=5)
        protocol.fetch(worker=worker, upstream_id="t", output=upstream.url("/own.png"), into=io.BytesIO(), timeout=5)
    finally:
        cdn.stop()
    assert "Authorization" not in cdn.hits("/file.png")[0].headers
    assert upstream.hits("/own.png")[0].headers["Authorization"] == f"Bearer {SECRET}"


def test_a_5xx_submission_is_retryable_and_a_4xx_is_a_refusal_without_the_key(upstream):
    worker = job_worker(upstream.url("").rstrip("/"))
    protocol = JobProtocol()
    upstream.on("/tasks", status=503, json={"error": "busy"})
    with pytest.raises(RetryableWorkerError):
        protocol.submit(worker=worker, submission=Submission(prompt="p", job_id="j"), timeout=5)
    upstream.on("/tasks", status=422, json={"error": f"nope {SECRET}"})
    with pytest.raises(UpstreamRejected) as refused:
        protocol.submit(worker=worker, submission=Submission(prompt="p", job_id="j"), timeout=5)
    assert SECRET not in str(refused.value.detail)


def test_a_fetched_output_that_the_worker_refuses_is_a_refusal(upstream):
    worker = job_worker(upstream.url("").rstrip("/"), output="fetch", fetch_path="/tasks/{UPSTREAM_ID}/file")
    upstream.on("/tasks/t/file", status=404, json={"error": "gone"})
    with pytest.raises(UpstreamRejected):
        JobProtocol().fetch(worker=worker, upstream_id="t", output=None, into=io.BytesIO(), timeout=5)


def test_the_prober_gets_the_probe_path_and_never_submits(upstream):
    upstream.on("/health", json={"ok": True})
    worker = job_worker(upstream.url("").rstrip("/"), probe_path="/health")
    JobProtocol().complete(worker=worker, prompt="ping", temperature=None, timeout=5)
    assert upstream.hits("/health") and not upstream.hits("/tasks")


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"submit_path": ""}, "submit_path: is required"),
        ({"poll_path": "tasks"}, "poll_path: must start with /"),
        ({"status_map": {"DONE": "finished"}}, "status_map"),
        ({"output": "carrier pigeon"}, "output: must be one of"),
        ({"output": "url", "output_extract": ""}, "output_extract: is required"),
        ({"output": "fetch"}, "fetch_path: is required"),
        ({"cancel_method": "POST"}, "give both, or neither"),
        ({"id_extract": "a..b"}, "id_extract"),
        ({"colour": "red"}, "unknown field(s) colour"),
    ],
)
def test_a_bad_job_api_is_refused_at_registration_naming_what_is_wrong(api, change, says):
    job_api = {
        "submit_path": "/t",
        "id_extract": "id",
        "poll_path": "/t/{UPSTREAM_ID}",
        "status_extract": "s",
        "output": "base64",
        "output_extract": "o",
        **change,
    }
    response = api.post(
        "/api/server/register",
        {
            "model_name": "m",
            "kind": "job",
            "req_url_template": "http://127.0.0.1:9",
            "body": {"p": "{USER_PROMPT}"},
            "job_api": job_api,
        },
        format="json",
    )
    assert response.status_code == 400, response.content
    assert says in response.json()["errors"]["job_api"][0]


def test_job_api_belongs_to_job_workers_and_a_job_worker_needs_a_prompt_in_its_body(api, upstream):
    chat = api.post(
        "/api/server/register",
        {"model_name": "c", "req_url_template": upstream.url("/"), "body": {"q": "{USER_PROMPT}"}, "job_api": {}},
        format="json",
    )
    assert chat.status_code == 400 and "only for job workers" in str(chat.json()["errors"]["job_api"])
    job = api.post(
        "/api/server/register",
        {"model_name": "j", "preset": "comfyui", "base_url": upstream.url("").rstrip("/"), "body": {"no": "prompt"}},
        format="json",
    )
    assert job.status_code == 400 and "{USER_PROMPT}" in str(job.json()["errors"]["body"])


def test_the_job_presets_show_what_they_filled_in(api, upstream):
    response = api.post(
        "/api/server/register",
        {
            "model_name": "v",
            "preset": "openai-videos",
            "base_url": upstream.url("/v1"),
            "api_key": SECRET,
            "capacity": 3,
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    worker = response.json()["worker"]
    assert worker["kind"] == "job" and worker["capacity"] == 3 and worker["preset"] == "openai-videos"
    assert worker["job_api"]["poll_path"] == "/videos/{UPSTREAM_ID}" and worker["header_names"] == ["Authorization"]
    assert SECRET not in response.content.decode()
