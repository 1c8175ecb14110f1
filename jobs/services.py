"""The jobs API's services: make a job, find a caller's own, list them, ask early, delete.

A job is only ever written to the database here; the calls to workers happen in a runner
(``jobs.runner``), except two a client causes: an early poll when it GETs a running job (at
most every MMM_JOB_EARLY_POLL_SECONDS per job, under the same lease a runner takes) and the
cancel of a DELETE. Both go to the job's own worker.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.caller import Caller
from inference.exceptions import ModelCannotServe, ModelNotFound, RetryableWorkerError
from inference.protocols import protocol_for
from jobs import results, scheduler
from jobs.exceptions import JobNotFound
from jobs.models import ACTIVE, Job, JobStatus, new_public_id
from jobs.runner import JobRunner
from jobs.wake import notify_runner
from mmm.api_errors import ApiError
from registry.models import Worker, WorkerKind

logger = logging.getLogger("mmm.jobs")


def job_create(*, kind: str, model_name: str, prompt: str, params: dict, caller: Caller | None) -> Job:
    """Queue a job for ``model_name``; a runner submits it when one of the model's job workers
    has a free slot. Raises ModelNotFound / ModelCannotServe when no job worker serves it."""
    workers = Worker.objects.dispatchable().filter(model_name=model_name)
    if not workers.filter(kind=WorkerKind.JOB).exists():
        if workers.exists():
            raise ModelCannotServe(
                f"model {model_name!r} has no job workers: its workers answer /v1/chat/completions "
                "(register an image or video server with a job preset, docs/jobs.md)",
                model_name=model_name,
            )
        raise ModelNotFound(model_name)
    job = Job.objects.create(
        public_id=new_public_id(kind),
        kind=kind,
        model_name=model_name,
        api_key_id=caller.api_key_id if caller else None,
        owner=caller.label[:300] if caller else "",
        prompt=prompt,
        params=params,
    )
    transaction.on_commit(notify_runner)  # the runner then finds it in the database
    return job


def job_get(*, public_id: str, kind: str, caller: Caller | None) -> Job:
    """The caller's own job (an admin's: any); another key's is JobNotFound, as an unknown one."""
    job = Job.objects.owned_by(caller).filter(public_id=public_id, kind=kind).select_related("worker").first()
    if job is None:
        raise JobNotFound(public_id)
    return job


def jobs_list(*, kind: str, caller: Caller | None, after: str | None, limit: int, order: str) -> tuple[list[Job], bool]:
    """A page of the caller's jobs, newest first (``order="desc"``) or oldest first, after the
    job ``after``; and whether there are more."""
    jobs = Job.objects.owned_by(caller).filter(kind=kind)
    descending = order == "desc"
    if after:
        anchor = jobs.filter(public_id=after).values_list("id", flat=True).first()
        if anchor is None:
            raise JobNotFound(after)
        jobs = jobs.filter(id__lt=anchor) if descending else jobs.filter(id__gt=anchor)
    page = list(jobs.order_by("-id" if descending else "id")[: limit + 1])
    return page[:limit], len(page) > limit


def job_refresh(*, job: Job, runner: JobRunner | None = None) -> Job:
    """Poll a running job's worker now if nobody has for MMM_JOB_EARLY_POLL_SECONDS (the lease
    makes that once per job across all processes); return the job as it now is."""
    now = timezone.now()
    recent = job.last_polled_at and now - job.last_polled_at < timedelta(seconds=settings.MMM_JOB_EARLY_POLL_SECONDS)
    if job.status != JobStatus.RUNNING or recent or job.worker is None:
        return job
    runner = runner or _early_runner()
    if not scheduler.claim(job, runner_id=runner.runner_id, now=now):
        return job  # a runner is at it
    runner.advance(job)
    return Job.objects.select_related("worker").filter(pk=job.pk).first() or job


_runner: JobRunner | None = None


def _early_runner() -> JobRunner:
    """This process's runner for early polls (its pool is never used: they run inline)."""
    global _runner
    if _runner is None:
        _runner = JobRunner(threads=1)
    return _runner


def job_delete(*, job: Job) -> None:
    """Cancel the job on its worker if it is there, remove its result, forget it.

    A cancel the worker does not answer does not keep the job: the owner asked for it gone
    (the worker's own copy then runs out unobserved, and the log says so).
    """
    if job.status in ACTIVE and job.worker is not None and job.upstream_id:
        try:
            protocol_for(job.worker).cancel(
                worker=job.worker, upstream_id=job.upstream_id, timeout=min(job.worker.effective_timeout, 30)
            )
        except (RetryableWorkerError, ApiError) as exc:
            logger.warning("job %s: the cancel on its worker failed, deleting it anyway: %s", job.public_id, exc)
    Job.objects.filter(pk=job.pk).delete()
    results.result_delete(job.result_name)


def jobs_prune(*, now=None) -> int:
    """Delete jobs past their expiry and their stored results; return how many."""
    now = now or timezone.now()
    count = 0
    while True:
        batch = list(Job.objects.filter(expires_at__lt=now).values_list("pk", "result_name")[:500])
        if not batch:
            return count
        for _, name in batch:
            try:
                results.result_delete(name)
            except OSError as exc:  # one unreadable file must not keep every other expired job
                logger.warning("could not delete the result %s: %s", name, exc)
        count += Job.objects.filter(pk__in=[pk for pk, _ in batch]).delete()[0]
