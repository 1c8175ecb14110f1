"""The webhook events of a job that ended: ``video.completed`` / ``video.failed`` and
``image.completed`` / ``image.failed``, queued in the same transaction as the job's end
(webhooks.services delivers them, signed, with retries)."""

from django.apps import apps

from jobs.models import Job


def job_ended_event(*, job: Job, data: dict) -> None:
    """Queue the event for ``job`` (which has just completed or failed) if its key has a webhook.
    Call inside the transaction that ends the job, so the event exists if and only if it ended."""
    if job.api_key_id is None or not apps.is_installed("webhooks"):
        return
    from webhooks.services import enqueue_event

    outcome = "completed" if job.status == "completed" else "failed"
    enqueue_event(
        api_key_id=job.api_key_id,
        event_type=f"{job.kind}.{outcome}",
        data=data,
        idempotency_key=f"{job.public_id}.{outcome}",
    )
