"""A fake of OpenAI's Videos API (``/v1/videos``), written from its reference and the types
of the pinned ``openai`` SDK (openai/types/video.py and friends), so the SDK's ``videos``
resource can drive it:

- ``POST /v1/videos`` as multipart/form-data (the SDK always sends that) or JSON: "prompt"
  (required), "model" (sora-2, sora-2-pro), "seconds" ("4", "8", "12"), "size" ("720x1280",
  "1280x720", "1024x1792", "1792x1024"), "input_reference" (a file) -> the video object
  {"id", "object": "video", "created_at", "status": queued|in_progress|completed|failed,
  "model", "progress" (0-100), "seconds", "size", "prompt", "completed_at", "expires_at",
  "error": {"code", "message"}, "remixed_from_video_id"};
- ``GET /v1/videos/{id}``; ``GET /v1/videos`` (``after``, ``limit``, ``order``) -> {"object":
  "list", "data", "first_id", "last_id", "has_more"};
- ``GET /v1/videos/{id}/content`` (``variant`` video|thumbnail|spritesheet, ``Range``);
- ``DELETE /v1/videos/{id}`` -> {"id", "object": "video.deleted", "deleted": true};
- errors as {"error": {"message", "type", "param", "code"}}; ``Authorization: Bearer``.

The API has no cancel: DELETE of a video still being made stops it and removes it.
"""

import secrets

from tests.fake_jobs import (
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    FakeJob,
    FakeJobServer,
    form_fields,
    header,
    png_bytes,
    query,
    unix,
)
from tests.fake_upstream import Reply, Seen

MODELS = ("sora-2", "sora-2-pro")
SECONDS = ("4", "8", "12")
SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
STATUS = {QUEUED: "queued", RUNNING: "in_progress", SUCCEEDED: "completed", FAILED: "failed"}
EXPIRY_SECONDS = 3600  # how long the fake keeps a finished video's files downloadable


def error(status: int, message: str, *, kind: str = "invalid_request_error", param=None, code=None) -> Reply:
    return Reply(status=status, json={"error": {"message": message, "type": kind, "param": param, "code": code}})


class OpenAIVideosServer(FakeJobServer):
    def __init__(self, *, api_key: str = "sk-test-videos", models: tuple[str, ...] = MODELS, **book) -> None:
        book.setdefault("media", "video")
        super().__init__(**book)
        self.api_key = api_key
        self.models = models
        self.route("POST", "/v1/videos", self.create)
        self.route("GET", "/v1/videos", self.list)
        self.route("GET", "/v1/videos/{video_id}", self.retrieve)
        self.route("DELETE", "/v1/videos/{video_id}", self.delete)
        self.route("GET", "/v1/videos/{video_id}/content", self.content)

    def refusal(self, seen: Seen) -> Reply | None:
        if header(seen, "Authorization") != f"Bearer {self.api_key}":
            return error(401, "Incorrect API key provided.", code="invalid_api_key")
        return None

    def create(self, seen: Seen) -> Reply:
        content_type = header(seen, "Content-Type") or ""
        try:
            fields = form_fields(seen) if content_type.startswith("multipart/form-data") else seen.json
        except ValueError:
            return error(400, "We could not parse the JSON body of your request.")
        if not isinstance(fields, dict):
            return error(400, "The request body must be an object.")
        if not isinstance(fields.get("prompt"), str) or not fields["prompt"]:
            return error(
                400, "Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter"
            )
        video = {
            "model": fields.get("model", "sora-2"),
            "seconds": str(fields.get("seconds", "4")),
            "size": fields.get("size", "720x1280"),
        }
        for name, allowed in (("model", self.models), ("seconds", SECONDS), ("size", SIZES)):
            if video[name] not in allowed:
                supported = ", ".join(f"'{value}'" for value in allowed)
                return error(
                    400,
                    f"Invalid value: '{video[name]}'. Supported values are: {supported}.",
                    param=name,
                    code="invalid_value",
                )
        if self.book.reject_status is not None:
            status = self.book.reject_status
            kind = "requests" if status == 429 else "server_error"
            return error(status, "The server is overloaded. Please try again later.", kind=kind)
        reference = fields.get("input_reference")
        job = self.book.submit(fields, job_id="video_" + secrets.token_hex(16))
        job.extra.update(video, prompt=fields["prompt"])
        if isinstance(reference, tuple):
            job.extra["input_reference"] = reference  # (filename, bytes, content type), for tests to check
        return Reply(json=self._video(job))

    def retrieve(self, seen: Seen, video_id: str) -> Reply:
        if self.book.poll_status is not None:
            return error(self.book.poll_status, "The server had an error processing your request.", kind="server_error")
        job = self.book.look(video_id)
        if job is None:
            return self._missing(video_id)
        return Reply(json=self._video(job))

    def list(self, seen: Seen) -> Reply:
        asked = query(seen)
        order = asked.get("order", "desc")
        if order not in ("asc", "desc"):
            return error(400, f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.", param="order")
        try:
            limit = int(asked.get("limit", "20"))
        except ValueError:
            return error(400, "Invalid 'limit': expected an integer.", param="limit")
        if not 1 <= limit <= 100:
            return error(400, "Invalid 'limit': must be between 1 and 100.", param="limit")
        jobs = sorted(self.book.all(), key=lambda job: job.number, reverse=order == "desc")
        if "after" in asked:
            ids = [job.id for job in jobs]
            if asked["after"] not in ids:
                return self._missing(asked["after"])
            jobs = jobs[ids.index(asked["after"]) + 1 :]
        page = jobs[:limit]
        return Reply(
            json={
                "object": "list",
                "data": [self._video(job) for job in page],
                "first_id": page[0].id if page else None,
                "last_id": page[-1].id if page else None,
                "has_more": len(jobs) > limit,
            }
        )

    def content(self, seen: Seen, video_id: str) -> Reply:
        job = self.book.look(video_id)
        if job is None:
            return self._missing(video_id)
        if job.state != SUCCEEDED:
            return error(400, f"Video '{video_id}' is not ready: its status is {STATUS.get(job.state, job.state)}.")
        variant = query(seen).get("variant", "video")
        if variant == "video":
            return self.file_reply(seen, job.result, "video/mp4")
        if variant in ("thumbnail", "spritesheet"):
            # A PNG stands in for OpenAI's WebP thumbnail and JPEG spritesheet.
            return self.file_reply(seen, png_bytes(f"{variant} {job.id}"), "image/png")
        supported = "'video', 'thumbnail', and 'spritesheet'"
        return error(400, f"Invalid value: '{variant}'. Supported values are: {supported}.", param="variant")

    def delete(self, seen: Seen, video_id: str) -> Reply:
        if self.book.forget(video_id) is None:
            return self._missing(video_id)
        return Reply(json={"id": video_id, "object": "video.deleted", "deleted": True})

    def _missing(self, video_id: str) -> Reply:
        return error(404, f"Video with id '{video_id}' not found.", param="video_id")

    def _video(self, job: FakeJob) -> dict:
        state = job.state
        completed_at = unix(job.finished_at, self.book) if state == SUCCEEDED else None
        return {
            "id": job.id,
            "object": "video",
            "created_at": unix(job.submitted_at, self.book),
            "status": STATUS[state],
            "model": job.extra["model"],
            "progress": int(job.progress(self.book.clock()) * 100),
            "seconds": job.extra["seconds"],
            "size": job.extra["size"],
            "prompt": job.extra["prompt"],
            "completed_at": completed_at,
            "expires_at": completed_at + EXPIRY_SECONDS if completed_at else None,
            "error": {"code": "video_generation_failed", "message": job.failure} if state == FAILED else None,
            "remixed_from_video_id": None,
        }
