"""A fake of Replicate's predictions API, written from its HTTP reference
(replicate.com/docs/reference/http):

- ``POST /v1/predictions`` {"version", "input", optional "webhook", "webhook_events_filter"}
  and ``POST /v1/models/{owner}/{name}/predictions`` {"input"} -> 201 and the prediction;
  ``Prefer: wait`` (or ``wait=N``, 1 to 60 s) holds the answer until the prediction finishes
  or N seconds pass, and then answers with it as it stands;
- ``GET /v1/predictions/{id}``, ``POST /v1/predictions/{id}/cancel``; ``GET /v1/account``;
- a prediction: {"id", "model", "version", "input", "logs", "output", "data_removed",
  "error", "status": starting|processing|succeeded|failed|canceled, "created_at",
  "started_at", "completed_at", "urls": {"get", "cancel", "stream", "web"}, "metrics"};
- errors as problem details {"title", "detail", "status"} (application/problem+json);
- ``Authorization: Bearer <token>``.

Replicate has no progress field: a model's progress shows in ``logs`` as tqdm lines, and so
it does here. Output files are served by this fake under ``/files/`` (Replicate serves them
from its delivery host): a list of URLs for an image model, one URL for a video model.
"""

import re

from tests.fake_jobs import FINISHED, QUEUED, RUNNING, FakeJob, FakeJobServer, header, iso
from tests.fake_upstream import Reply, Seen

STATUS = {QUEUED: "starting", RUNNING: "processing"}
PREFER_WAIT = re.compile(r"^\s*wait(?:\s*=\s*(\d+))?\s*$")


def problem(status: int, title: str, detail: str, **more) -> Reply:
    return Reply(
        status=status,
        json={"title": title, "detail": detail, "status": status, **more},
        headers={"Content-Type": "application/problem+json"},
    )


class ReplicateServer(FakeJobServer):
    def __init__(self, *, token: str = "r8_test_token", **book) -> None:
        super().__init__(**book)
        self.token = token
        self.route("POST", "/v1/predictions", self.create)
        self.route("POST", "/v1/models/{owner}/{name}/predictions", self.create_for_model)
        self.route("GET", "/v1/predictions/{prediction_id}", self.get)
        self.route("POST", "/v1/predictions/{prediction_id}/cancel", self.cancel)
        self.route("GET", "/files/{prediction_id}/{filename}", self.file, public=True)
        self.route("GET", "/v1/account", self.account)

    def refusal(self, seen: Seen) -> Reply | None:
        if header(seen, "Authorization") != f"Bearer {self.token}":
            return problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        return None

    def account(self, seen: Seen) -> Reply:
        return Reply(json={"type": "organization", "username": "fake", "name": "Fake Org", "github_url": None})

    def create(self, seen: Seen) -> Reply:
        return self._create(seen, model=None)

    def create_for_model(self, seen: Seen, owner: str, name: str) -> Reply:
        return self._create(seen, model=f"{owner}/{name}")

    def _create(self, seen: Seen, *, model: str | None) -> Reply:
        try:
            body = seen.json
        except ValueError:
            return problem(400, "Invalid JSON", "The request body is not valid JSON.")
        if not isinstance(body, dict):
            return problem(422, "Input validation failed", "The request body must be a JSON object.")
        missing = [name for name in (["input"] if model else ["version", "input"]) if name not in body]
        if missing:
            return problem(
                422,
                "Input validation failed",
                f"{missing[0]} is required",
                invalid_fields=[
                    {"type": "required", "field": name, "description": f"{name} is required"} for name in missing
                ],
            )
        if not isinstance(body["input"], dict):
            return problem(
                422,
                "Input validation failed",
                "input must be an object",
                invalid_fields=[{"type": "invalid_type", "field": "input", "description": "input must be an object"}],
            )
        if self.book.reject_status is not None:
            status = self.book.reject_status
            return problem(status, "Request was throttled." if status == 429 else "Internal Server Error", "Try again")
        version = body.get("version") or "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
        job = self.book.submit(body, job_id=_prediction_id())
        job.extra["model"] = model or (version.split(":")[0] if ":" in version else "fake/model")
        job.extra["version"] = version.split(":")[-1]
        wait = self._wait_seconds(seen)
        if wait:
            self._hold(job, wait)
        return Reply(status=201, json=self._prediction(job))

    def get(self, seen: Seen, prediction_id: str) -> Reply:
        if self.book.poll_status is not None:
            return problem(self.book.poll_status, "Internal Server Error", "Try again")
        job = self.book.look(prediction_id)
        if job is None:
            return problem(404, "Not found", "The requested resource could not be found.")
        return Reply(json=self._prediction(job))

    def cancel(self, seen: Seen, prediction_id: str) -> Reply:
        job = self.book.cancel(prediction_id)
        if job is None:
            return problem(404, "Not found", "The requested resource could not be found.")
        return Reply(json=self._prediction(job))

    def file(self, seen: Seen, prediction_id: str, filename: str) -> Reply:
        job = self.book.look(prediction_id, poll=False)
        if job is None or job.state != "succeeded" or filename != self._filename(job):
            return Reply(status=404, text="Not Found")
        return self.file_reply(seen, job.result, self.book.result_type)

    def _wait_seconds(self, seen: Seen) -> int:
        match = PREFER_WAIT.match(header(seen, "Prefer") or "")
        if match is None:
            return 0
        return min(60, max(1, int(match.group(1) or 60)))

    def _hold(self, job: FakeJob, seconds: int) -> None:
        deadline = self.book.clock() + seconds
        while self.book.clock() < deadline:
            if self.book.look(job.id, poll=False).state in FINISHED:
                return
            if self.upstream._stopping.wait(0.02):
                return

    def _filename(self, job: FakeJob) -> str:
        return "output.mp4" if self.book.media == "video" else "out-0.png"

    def _prediction(self, job: FakeJob) -> dict:
        now = self.book.clock()
        state = job.state
        output = None
        if state == "succeeded":
            url = f"{self.url}/files/{job.id}/{self._filename(job)}"
            output = url if self.book.media == "video" else [url]
        logs = ""
        if job.started_at is not None:
            steps = 50
            done = int(job.progress(now) * steps)
            logs = f"Using seed: 42\n{int(done * 100 / steps):3d}%|{'#' * (done // 5):<10}| {done}/{steps}\n"
        api = f"{self.url}/v1/predictions/{job.id}"
        return {
            "id": job.id,
            "model": job.extra["model"],
            "version": job.extra["version"],
            "input": job.body["input"],
            "logs": logs,
            "output": output,
            "data_removed": False,
            "error": job.failure if state == "failed" else None,
            "status": STATUS.get(state, state),
            "created_at": iso(job.submitted_at, self.book),
            "started_at": iso(job.started_at, self.book),
            "completed_at": iso(job.finished_at or job.canceled_at, self.book),
            "urls": {
                "get": api,
                "cancel": f"{api}/cancel",
                "stream": f"{self.url}/v1/streams/{job.id}",
                "web": f"https://replicate.com/p/{job.id}",
            },
            "metrics": {"predict_time": round(job.duration, 3)} if state == "succeeded" else {},
        }


def _prediction_id() -> str:
    import secrets

    # Replicate's ids are 26 lower-case letters and digits.
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(26))
