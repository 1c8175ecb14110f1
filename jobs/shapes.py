"""A job as the API shows it: OpenAI's video object for /v1/videos, the same shape with
``object: "image.job"`` for /v1/images/jobs, plus the gateway's ``queue_position``."""

from jobs.models import Job, JobKind, JobStatus


def _unix(value) -> int | None:
    return int(value.timestamp()) if value else None


def job_object(job: Job, *, queue_position: int | None = None) -> dict:
    status = job.public_status
    document = {
        "id": job.public_id,
        "object": "video" if job.kind == JobKind.VIDEO else "image.job",
        "model": job.model_name,
        "status": status,
        "progress": 100 if job.status == JobStatus.COMPLETED else job.progress,
        "created_at": _unix(job.created_at),
        "completed_at": _unix(job.completed_at),
        "expires_at": _unix(job.expires_at),
        "prompt": job.prompt,
        "size": job.params.get("size"),
        "error": {"code": job.error_code or "job_failed", "message": job.error} if status == "failed" else None,
        # The gateway's own: how many jobs of the model wait before this one (1 is next).
        "queue_position": queue_position,
    }
    if job.kind == JobKind.VIDEO:
        document["seconds"] = job.params.get("seconds")
        document["remixed_from_video_id"] = None
    return document


def deleted_object(job: Job) -> dict:
    return {
        "id": job.public_id,
        "object": "video.deleted" if job.kind == JobKind.VIDEO else "image.job.deleted",
        "deleted": True,
    }
