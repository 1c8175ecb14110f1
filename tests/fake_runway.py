"""A fake of Runway's API (api.dev.runwayml.com), written from its reference
(docs.dev.runwayml.com/api):

- every request needs ``Authorization: Bearer <key>`` and ``X-Runway-Version: 2024-11-06``;
- ``POST /v1/image_to_video`` {"model", "promptImage" (a URL or data URI, or a list of
  {"uri", "position"}), "ratio", optional "promptText", "duration", "seed"},
  ``POST /v1/text_to_video`` {"model", "promptText", "ratio", optional "duration"} and
  ``POST /v1/text_to_image`` {"model", "promptText", "ratio"} -> {"id"};
- ``GET /v1/tasks/{id}`` -> {"id", "status", "createdAt"}, with "progress" (0 to 1) while
  RUNNING, "output" (a list of URLs) once SUCCEEDED, "failure" and "failureCode" once FAILED;
  status PENDING (not started), THROTTLED (waiting because the account's concurrency is
  used up), RUNNING, SUCCEEDED, FAILED, CANCELLED;
- ``GET /v1/organization`` -> {"creditBalance", "tier", "usage"};
- ``DELETE /v1/tasks/{id}`` -> 204: cancels a task that is still going, deletes one that is
  done (a later GET answers 404);
- errors as {"error": "..."} (a body that fails validation also gets "issues").

Output URLs point at this fake's ``/files/`` (Runway's are signed URLs on its CDN).
"""

import uuid

from tests.fake_jobs import CANCELED, FAILED, QUEUED, RUNNING, SUCCEEDED, FakeJob, FakeJobServer, header, iso
from tests.fake_upstream import Reply, Seen

API_VERSION = "2024-11-06"
RATIOS = {"1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672", "1920:1080", "1080:1920"}
REQUIRED = {
    "/v1/image_to_video": ("model", "promptImage", "ratio"),
    "/v1/text_to_video": ("model", "promptText", "ratio"),
    "/v1/text_to_image": ("model", "promptText", "ratio"),
}


def error(status: int, message: str, **more) -> Reply:
    return Reply(status=status, json={"error": message, **more})


class RunwayServer(FakeJobServer):
    def __init__(self, *, api_key: str = "key_test_runway", **book) -> None:
        book.setdefault("media", "video")
        super().__init__(**book)
        self.api_key = api_key
        for path in REQUIRED:
            self.route("POST", path, self.create)
        self.route("GET", "/v1/tasks/{task_id}", self.get)
        self.route("DELETE", "/v1/tasks/{task_id}", self.delete)
        self.route("GET", "/files/{task_id}/{filename}", self.file, public=True)
        self.route("GET", "/v1/organization", self.organization)

    def refusal(self, seen: Seen) -> Reply | None:
        if header(seen, "Authorization") != f"Bearer {self.api_key}":
            return error(401, "Invalid API key")
        version = header(seen, "X-Runway-Version")
        if version is None:
            return error(400, "The X-Runway-Version header is required. Use 2024-11-06.")
        if version != API_VERSION:
            return error(400, f"Invalid API version: {version}")
        return None

    def organization(self, seen: Seen) -> Reply:
        return Reply(json={"creditBalance": 1000, "tier": {"maxMonthlyCreditSpend": 10000, "models": {}}, "usage": {}})

    def create(self, seen: Seen) -> Reply:
        try:
            body = seen.json
        except ValueError:
            return error(400, "Invalid JSON body")
        if not isinstance(body, dict):
            return error(400, "Validation of body failed", issues=[{"message": "Expected object", "path": []}])
        path = seen.path.split("?")[0]
        issues = [
            {"code": "invalid_type", "message": "Required", "path": [name]}
            for name in REQUIRED[path]
            if name not in body
        ]
        if "ratio" in body and body["ratio"] not in RATIOS:
            issues.append(
                {"code": "invalid_enum_value", "message": f"Invalid ratio {body['ratio']!r}", "path": ["ratio"]}
            )
        if "duration" in body and body["duration"] not in (5, 10):
            issues.append({"code": "invalid_literal", "message": "duration must be 5 or 10", "path": ["duration"]})
        if issues:
            return error(400, "Validation of body failed", issues=issues)
        if self.book.reject_status is not None:
            status = self.book.reject_status
            return error(status, "Too many requests" if status == 429 else "Internal server error")
        job = self.book.submit(body, job_id=str(uuid.uuid4()))
        return Reply(json={"id": job.id})

    def get(self, seen: Seen, task_id: str) -> Reply:
        if self.book.poll_status is not None:
            return error(self.book.poll_status, "Internal server error")
        job = self.book.look(task_id)
        if job is None:
            return error(404, "Task not found")
        return Reply(json=self._task(job))

    def delete(self, seen: Seen, task_id: str) -> Reply:
        job = self.book.look(task_id, poll=False)
        if job is None:
            return error(404, "Task not found")
        if job.state in (QUEUED, RUNNING):
            self.book.cancel(task_id)
        else:
            self.book.forget(task_id)
        return Reply(status=204, body=b"")

    def file(self, seen: Seen, task_id: str, filename: str) -> Reply:
        job = self.book.look(task_id, poll=False)
        if job is None or job.state != SUCCEEDED or filename != self._filename(job):
            return Reply(status=404, text="Not Found")
        return self.file_reply(seen, job.result, self.book.result_type)

    def _filename(self, job: FakeJob) -> str:
        return f"{job.id}.{self.book.result_extension}"

    def _task(self, job: FakeJob) -> dict:
        task = {"id": job.id, "createdAt": iso(job.submitted_at, self.book)}
        state = job.state
        if state == QUEUED:
            waiting_for_slot = self.book.clock() >= job.eligible_at
            task["status"] = "THROTTLED" if waiting_for_slot else "PENDING"
        elif state == RUNNING:
            task["status"] = "RUNNING"
            task["progress"] = round(job.progress(self.book.clock()), 3)
        elif state == SUCCEEDED:
            task["status"] = "SUCCEEDED"
            task["output"] = [f"{self.url}/files/{job.id}/{self._filename(job)}"]
        elif state == FAILED:
            task["status"] = "FAILED"
            task["failure"] = job.failure
            task["failureCode"] = "INTERNAL.BAD_OUTPUT"
        elif state == CANCELED:
            task["status"] = "CANCELLED"
        return task
