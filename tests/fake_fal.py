"""A fake of fal.ai's queue (queue.fal.run), written from its reference
(docs.fal.ai, "Queue"):

- ``POST /{owner}/{app}[/{path}]`` with the model's input as JSON -> {"request_id",
  "response_url", "status_url", "cancel_url", "queue_position"}; the three URLs name the app
  without its sub-path, as fal's do;
- ``GET /{owner}/{app}/requests/{id}/status`` (``?logs=1`` adds logs) -> {"status":
  "IN_QUEUE", "queue_position"} | {"status": "IN_PROGRESS", "logs"} | {"status": "COMPLETED",
  "logs", "metrics"}, each with the URLs; a request that failed is COMPLETED with "error" and
  "error_type", and its result answers with the error;
- ``GET /{owner}/{app}/requests/{id}`` -> the model's output ({"images": [{"url", "width",
  "height", "content_type"}], "seed"} for an image app, {"video": {"url", "content_type",
  "file_name", "file_size"}} for a video app); 400 while the request is not done;
- ``PUT /{owner}/{app}/requests/{id}/cancel`` -> 202 {"status": "CANCELLATION_REQUESTED"},
  400 {"status": "ALREADY_COMPLETED"}, 404 {"status": "NOT_FOUND"};
- ``Authorization: Key <key>``; errors as {"detail": ...}.

Output files are served by this fake under ``/files/`` (fal serves them from its media host).
"""

import uuid

from tests.fake_jobs import CANCELED, FAILED, QUEUED, RUNNING, SUCCEEDED, FakeJob, FakeJobServer, header, iso, query
from tests.fake_upstream import Reply, Seen


class FalServer(FakeJobServer):
    def __init__(self, *, api_key: str = "fal-test-key", **book) -> None:
        super().__init__(**book)
        self.api_key = api_key
        self.route("GET", "/files/{request_id}/{filename}", self.file, public=True)
        self.route("GET", "/{owner}/{app}/requests/{request_id}/status", self.status)
        self.route("PUT", "/{owner}/{app}/requests/{request_id}/cancel", self.cancel)
        self.route("GET", "/{owner}/{app}/requests/{request_id}", self.result)
        self.route("POST", "/{owner}/{app}", self.submit)
        self.route("POST", "/{owner}/{app}/{subpath*}", self.submit)

    def refusal(self, seen: Seen) -> Reply | None:
        if header(seen, "Authorization") != f"Key {self.api_key}":
            return Reply(status=401, json={"detail": "Invalid key"})
        return None

    def submit(self, seen: Seen, owner: str, app: str, subpath: str = "") -> Reply:
        try:
            body = seen.json
        except ValueError:
            return Reply(status=422, json={"detail": [{"loc": ["body"], "msg": "Invalid JSON", "type": "value_error"}]})
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
            return Reply(
                status=422,
                json={"detail": [{"loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"}]},
            )
        if self.book.reject_status is not None:
            return Reply(status=self.book.reject_status, json={"detail": "Service temporarily unavailable"})
        job = self.book.submit(body, job_id=str(uuid.uuid4()))
        job.extra["app"] = f"{owner}/{app}"
        return Reply(json={**self._urls(job), "queue_position": self.book.queue_position(job)})

    def status(self, seen: Seen, owner: str, app: str, request_id: str) -> Reply:
        if self.book.poll_status is not None:
            return Reply(status=self.book.poll_status, json={"detail": "Internal Server Error"})
        job = self._job(request_id, owner, app)
        if job is None:
            return Reply(status=404, json={"detail": "Request not found"})
        answer = self._urls(job)
        with_logs = query(seen).get("logs") == "1"
        if job.state == QUEUED:
            answer.update(status="IN_QUEUE", queue_position=self.book.queue_position(job))
        elif job.state == RUNNING:
            percent = int(job.progress(self.book.clock()) * 100)
            answer.update(status="IN_PROGRESS", logs=self._logs(job, f"{percent}% done") if with_logs else None)
        else:
            answer.update(status="COMPLETED", logs=self._logs(job, "done") if with_logs else None)
            if job.state == SUCCEEDED:
                answer["metrics"] = {"inference_time": round(job.duration, 3)}
            elif job.state == FAILED:
                answer.update(error=job.failure, error_type="runner_error")
            else:
                answer.update(error="Request was cancelled", error_type="request_cancelled")
        return Reply(json=answer)

    def result(self, seen: Seen, owner: str, app: str, request_id: str) -> Reply:
        job = self._job(request_id, owner, app)
        if job is None:
            return Reply(status=404, json={"detail": "Request not found"})
        if job.state in (QUEUED, RUNNING):
            return Reply(status=400, json={"detail": "Request is still in progress"})
        if job.state == FAILED:
            return Reply(status=500, json={"detail": job.failure})
        if job.state == CANCELED:
            return Reply(status=400, json={"detail": "Request was cancelled"})
        url = f"{self.url}/files/{job.id}/{self._filename(job)}"
        if self.book.media == "video":
            video = {"url": url, "content_type": "video/mp4", "file_name": self._filename(job)}
            return Reply(json={"video": {**video, "file_size": len(job.result)}, "seed": 42})
        image = {"url": url, "width": 1, "height": 1, "content_type": "image/png"}
        return Reply(json={"images": [image], "seed": 42, "has_nsfw_concepts": [False], "prompt": job.body["prompt"]})

    def cancel(self, seen: Seen, owner: str, app: str, request_id: str) -> Reply:
        job = self._job(request_id, owner, app, poll=False)
        if job is None:
            return Reply(status=404, json={"status": "NOT_FOUND"})
        if job.state not in (QUEUED, RUNNING):
            return Reply(status=400, json={"status": "ALREADY_COMPLETED"})
        self.book.cancel(request_id)
        return Reply(status=202, json={"status": "CANCELLATION_REQUESTED"})

    def file(self, seen: Seen, request_id: str, filename: str) -> Reply:
        job = self.book.look(request_id, poll=False)
        if job is None or job.state != SUCCEEDED or filename != self._filename(job):
            return Reply(status=404, json={"detail": "Not Found"})
        return self.file_reply(seen, job.result, self.book.result_type)

    def _job(self, request_id: str, owner: str, app: str, *, poll: bool = True) -> FakeJob | None:
        job = self.book.look(request_id, poll=poll)
        # fal answers a request only under the app it was submitted to.
        return job if job is not None and job.extra["app"] == f"{owner}/{app}" else None

    def _logs(self, job: FakeJob, message: str) -> list[dict]:
        return [{"message": message, "level": "INFO", "source": "user", "timestamp": iso(job.started_at, self.book)}]

    def _filename(self, job: FakeJob) -> str:
        return f"output.{self.book.result_extension}"

    def _urls(self, job: FakeJob) -> dict:
        base = f"{self.url}/{job.extra['app']}/requests/{job.id}"
        return {
            "request_id": job.id,
            "response_url": base,
            "status_url": f"{base}/status",
            "cancel_url": f"{base}/cancel",
        }
