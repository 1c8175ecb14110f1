"""What a completed job is charged: its model's price per image or per second of video
(usage.services.record_job_usage, once per job however often it is called).

Failed and cancelled jobs are not charged. A video without ``seconds`` in its request is charged
for MMM_JOB_DEFAULT_VIDEO_SECONDS, the length OpenAI's /v1/videos makes when none is asked for.
"""

import logging
from decimal import Decimal

from django.apps import apps
from django.conf import settings

from jobs.models import Job, JobKind

logger = logging.getLogger("mmm.jobs")


def job_charge(*, kind: str, params: dict) -> tuple[int, Decimal]:
    """(images, video seconds) that a job of ``kind`` asked with ``params`` is charged for."""
    if kind == JobKind.VIDEO:
        return 0, Decimal(str(params.get("seconds") or settings.MMM_JOB_DEFAULT_VIDEO_SECONDS))
    return 1, Decimal(0)


def refuse_over_budget(*, api_key_id: int | None, model_name: str, kind: str, params: dict) -> None:
    """Raise usage's BudgetExceeded (a 429) when the job would start over a budget of its key."""
    if not apps.is_installed("usage"):
        return
    from usage.services import usage_check_job

    images, seconds = job_charge(kind=kind, params=params)
    usage_check_job(api_key_id=api_key_id, model_name=model_name, images=images, video_seconds=seconds)


def bill_completed_job(*, job: Job) -> None:
    """Charge ``job``, which has just completed, and write its ledger row now: the runner is off
    any request's path, and a runner killed a moment later must not lose the charge."""
    if not apps.is_installed("usage"):
        return
    from usage.ledger import ledger_writer
    from usage.services import record_job_usage

    images, seconds = job_charge(kind=job.kind, params=job.params)
    try:
        record_job_usage(
            api_key_id=job.api_key_id,
            model_name=job.model_name,
            job_id=job.public_id,
            images=images,
            video_seconds=seconds,
            started_at=job.created_at,
            api_key_prefix=job.api_key.prefix if job.api_key_id and job.api_key else "",
        )
        ledger_writer.flush()
    except Exception:
        # The job stays completed; reconcile_usage and the ledger say what was charged.
        logger.exception("job %s could not be charged", job.public_id)
