"""Moving jobs along: submit queued jobs, poll running ones, fetch and store what finished.

One pass (``JobRunner.run_pass``) claims work (``jobs.scheduler``), makes the calls to the
workers in a thread pool, and records each outcome in the calling thread with a conditional
update on its own lease, so a runner that lost its lease (it stalled past it and another took
the job over) writes nothing. Several runners, on several hosts, may run passes at once.

Affinity: a job's poll, fetch and cancel go to ``job.worker``, the worker that accepted it,
never through the balancer; only the submission moves to another worker when one fails
(unreachable, 5xx, 429), and after a worker accepted it, never.
"""

import logging
import os
import socket
import tempfile
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from inference.exceptions import RetryableWorkerError
from inference.protocols import protocol_for
from inference.protocols.job import COMPLETED, FAILED, Polled, Submission, job_api_of
from inference.redaction import redact_url
from jobs import billing, notify, results, scheduler
from jobs.models import ACTIVE, Job, JobStatus
from jobs.shapes import job_object
from mmm.api_errors import ApiError
from registry.models import Worker, WorkerKind

logger = logging.getLogger("mmm.jobs")

# Runners name themselves so an operator can tell whose lease a job holds.
RUNNER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
# Jobs polled per pass at most: a pass stays short, so submissions are not held up behind polls.
_POLLS_PER_PASS = 200


# --- what a call to a worker came to ----------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    upstream_id: str


@dataclass(frozen=True)
class NotAccepted:
    error: str
    retryable: bool  # another worker (or a later try) may take it


@dataclass(frozen=True)
class Seen:
    polled: Polled


@dataclass(frozen=True)
class Unanswered:
    error: str  # the worker could not be reached or failed; the job goes on until it is lost


@dataclass(frozen=True)
class Refused:
    error: str  # the worker answered that the job cannot go on (unknown id, unreadable output)


@dataclass(frozen=True)
class Stored:
    content_type: str
    name: str = ""
    url: str = ""
    size: int | None = None


def _where(job: Job) -> str:
    worker = job.worker
    return f"worker {worker.pk} ({redact_url(worker.req_url_template)})" if worker else "its worker"


def submission_of(job: Job) -> Submission:
    return Submission(
        prompt=job.prompt,
        job_id=job.public_id,
        size=job.params.get("size"),
        seconds=job.params.get("seconds"),
        input_reference=job.params.get("input_reference"),
    )


def submit_call(job: Job) -> Accepted | NotAccepted:
    worker = job.worker
    try:
        upstream_id = protocol_for(worker).submit(
            worker=worker, submission=submission_of(job), timeout=worker.effective_timeout
        )
    except RetryableWorkerError as exc:
        return NotAccepted(error=str(exc), retryable=True)
    except ApiError as exc:
        return NotAccepted(error=str(exc.detail), retryable=False)
    except Exception as exc:  # one broken job must not end the pass for the others
        logger.exception("submitting job %s failed unexpectedly", job.public_id)
        return NotAccepted(error=f"submission failed unexpectedly: {type(exc).__name__}", retryable=True)
    return Accepted(upstream_id=upstream_id)


def poll_call(job: Job) -> Seen | Unanswered | Refused:
    worker = job.worker
    try:
        return Seen(
            polled=protocol_for(worker).poll(
                worker=worker, upstream_id=job.upstream_id, timeout=worker.effective_timeout
            )
        )
    except RetryableWorkerError as exc:
        return Unanswered(error=str(exc))
    except ApiError as exc:
        return Refused(error=str(exc.detail))
    except Exception as exc:
        logger.exception("polling job %s failed unexpectedly", job.public_id)
        return Unanswered(error=f"poll failed unexpectedly: {type(exc).__name__}")


def fetch_call(job: Job, output) -> Stored | Unanswered | Refused:
    """Copy the output into the job_results storage (or, with MMM_JOB_RESULTS=link, keep the
    upstream's URL of it)."""
    worker = job.worker
    api = job_api_of(worker)
    if settings.MMM_JOB_RESULTS == "link" and api.output == "url":
        return Stored(content_type=api.content_type, url=output)
    try:
        with tempfile.TemporaryFile() as spool:
            fetched = protocol_for(worker).fetch(
                worker=worker,
                upstream_id=job.upstream_id,
                output=output,
                into=spool,
                timeout=settings.MMM_JOB_FETCH_TIMEOUT,
            )
            name = results.result_store(public_id=job.public_id, content=spool, content_type=fetched.content_type)
    except RetryableWorkerError as exc:
        return Unanswered(error=str(exc))
    except ApiError as exc:
        return Refused(error=str(exc.detail))
    except Exception as exc:
        logger.exception("fetching the result of job %s failed unexpectedly", job.public_id)
        return Unanswered(error=f"fetch failed unexpectedly: {type(exc).__name__}")
    return Stored(content_type=fetched.content_type, name=name, size=fetched.size)


# --- recording outcomes (the calling thread) --------------------------------------------------


def _mine(job: Job, runner_id: str):
    return Job.objects.filter(pk=job.pk, lease_owner=runner_id)


def record_submission(job: Job, outcome: Accepted | NotAccepted, *, runner_id: str, now: datetime) -> str:
    if isinstance(outcome, Accepted):
        applied = (
            _mine(job, runner_id)
            .filter(status=JobStatus.SUBMITTING)
            .update(
                status=JobStatus.RUNNING,
                upstream_id=outcome.upstream_id,
                worker_label=str(job.worker)[:2300],
                submitted_at=now,
                last_contact_at=now,
                next_poll_at=now + timedelta(seconds=settings.MMM_JOB_POLL_MIN_SECONDS),
                submit_attempts=job.submit_attempts + 1,
                lease_owner="",
                lease_expires_at=None,
            )
        )
        if not applied and not Job.objects.filter(pk=job.pk).exists():
            _cancel_quietly(job, outcome.upstream_id)  # deleted by its owner while it was being submitted
        return "submitted" if applied else "lost lease"
    if not outcome.retryable:
        error = f"{_where(job)} refused the job: {outcome.error}"
        return "failed" if job_fail(job, error=error, code="upstream_rejected", runner_id=runner_id, now=now) else ""
    # Back to the queue, to another worker if one has room (scheduler._worker_for), or to this
    # one again after a backoff once all have failed it.
    tried = sorted({*job.tried_worker_ids, job.worker.pk})
    backoff = min(2.0 ** min(job.submit_attempts, 5), 30.0) if len(tried) >= _model_worker_count(job) else 0.0
    _mine(job, runner_id).filter(status=JobStatus.SUBMITTING).update(
        status=JobStatus.QUEUED,
        worker=None,
        tried_worker_ids=tried if backoff == 0 else [],
        submit_attempts=job.submit_attempts + 1,
        last_error=f"{_where(job)}: {outcome.error}"[:2000],
        not_before=now + timedelta(seconds=backoff),
        lease_owner="",
        lease_expires_at=None,
    )
    logger.warning("job %s: %s did not take it: %s", job.public_id, _where(job), outcome.error)
    return "requeued"


def _model_worker_count(job: Job) -> int:
    return Worker.objects.routable().filter(model_name=job.model_name, kind=WorkerKind.JOB).count()


def record_poll(job: Job, outcome: Seen | Unanswered | Refused, *, runner_id: str, now: datetime) -> str:
    """Record a poll; "fetch" means the worker says it is done and the output is to be got."""
    if isinstance(outcome, Refused):
        error = f"{_where(job)} no longer answers for the job: {outcome.error}"
        return "failed" if job_fail(job, error=error, code="upstream_failed", runner_id=runner_id, now=now) else ""
    if isinstance(outcome, Unanswered):
        return _record_silence(job, outcome.error, runner_id=runner_id, now=now)
    polled = outcome.polled
    if polled.status == FAILED:
        error = f"{_where(job)} says the job failed: {polled.error}"
        return "failed" if job_fail(job, error=error, code="generation_failed", runner_id=runner_id, now=now) else ""
    changes = {
        "upstream_status": polled.upstream_status[:100],
        "upstream_phase": polled.status,
        "last_contact_at": now,
        "last_error": "",
    }
    if polled.progress is not None:
        changes["progress"] = min(polled.progress, 99)  # 100 once the result is stored
    if polled.status == COMPLETED:
        _mine(job, runner_id).update(**changes)
        return "fetch"
    job.submitted_at = job.submitted_at or now
    _mine(job, runner_id).update(
        **changes, next_poll_at=now + timedelta(seconds=job.poll_interval(now)), lease_owner="", lease_expires_at=None
    )
    return "running"


def _record_silence(job: Job, error: str, *, runner_id: str, now: datetime) -> str:
    """The worker did not answer: the job waits for it, up to MMM_JOB_WORKER_LOST_SECONDS."""
    since = job.last_contact_at or job.submitted_at or now
    silent = (now - since).total_seconds()
    if silent >= settings.MMM_JOB_WORKER_LOST_SECONDS:
        message = (
            f"{_where(job)} has not answered about the job for {silent:.0f} s "
            f"(MMM_JOB_WORKER_LOST_SECONDS is {settings.MMM_JOB_WORKER_LOST_SECONDS:g}); last: {error}"
        )
        return "failed" if job_fail(job, error=message, code="worker_lost", runner_id=runner_id, now=now) else ""
    _mine(job, runner_id).update(
        last_error=error[:2000],
        next_poll_at=now + timedelta(seconds=job.poll_interval(now)),
        lease_owner="",
        lease_expires_at=None,
    )
    return "unanswered"


def record_fetch(job: Job, outcome: Stored | Unanswered | Refused, *, runner_id: str, now: datetime) -> str:
    if isinstance(outcome, Refused):
        error = f"{_where(job)} finished the job but its output could not be got: {outcome.error}"
        return "failed" if job_fail(job, error=error, code="upstream_failed", runner_id=runner_id, now=now) else ""
    if isinstance(outcome, Unanswered):
        return _record_silence(job, outcome.error, runner_id=runner_id, now=now)
    expires = now + timedelta(seconds=settings.MMM_JOB_RETENTION_SECONDS)
    with transaction.atomic():
        applied = _mine(job, runner_id).update(
            status=JobStatus.COMPLETED,
            progress=100,
            completed_at=now,
            expires_at=expires,
            result_name=outcome.name,
            result_url=outcome.url,
            result_content_type=outcome.content_type[:200],
            result_bytes=outcome.size,
            last_contact_at=now,
            last_error="",
            lease_owner="",
            lease_expires_at=None,
            next_poll_at=None,
        )
        if applied:
            job.status, job.progress, job.completed_at, job.expires_at = JobStatus.COMPLETED, 100, now, expires
            notify.job_ended_event(job=job, data=job_object(job))
            transaction.on_commit(lambda: billing.bill_completed_job(job=job))
    if not applied:
        results.result_delete(outcome.name)  # deleted by its owner meanwhile, or taken over
        return ""
    return "completed"


def job_fail(job: Job, *, error: str, code: str, runner_id: str | None, now: datetime) -> bool:
    """End ``job`` as failed (if this runner still holds it, or, with runner_id None, whoever
    does), with its webhook event in the same transaction."""
    rows = Job.objects.filter(pk=job.pk, status__in=(JobStatus.QUEUED, JobStatus.SUBMITTING, JobStatus.RUNNING))
    if runner_id is not None:
        rows = rows.filter(lease_owner=runner_id)
    expires = now + timedelta(seconds=settings.MMM_JOB_RETENTION_SECONDS)
    with transaction.atomic():
        applied = rows.update(
            status=JobStatus.FAILED,
            error=error[:4000],
            error_code=code,
            completed_at=now,
            expires_at=expires,
            lease_owner="",
            lease_expires_at=None,
            next_poll_at=None,
        )
        if applied:
            job.status, job.error, job.error_code, job.completed_at, job.expires_at = (
                JobStatus.FAILED,
                error[:4000],
                code,
                now,
                expires,
            )
            notify.job_ended_event(job=job, data=job_object(job))
    if applied:
        logger.warning("job %s failed: %s", job.public_id, error)
    return bool(applied)


def _cancel_quietly(job: Job, upstream_id: str) -> None:
    try:
        protocol_for(job.worker).cancel(
            worker=job.worker, upstream_id=upstream_id, timeout=job.worker.effective_timeout
        )
    except (RetryableWorkerError, ApiError) as exc:
        logger.warning("job %s: could not cancel it on %s: %s", job.public_id, _where(job), exc)


# --- the pass ---------------------------------------------------------------------------------


@dataclass
class PassSummary:
    submitted: int = 0
    requeued: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    unanswered: int = 0
    released: int = 0
    pruned: int = 0

    def count(self, what: str) -> None:
        if what in ("submitted", "requeued", "running", "completed", "failed", "unanswered"):
            setattr(self, what, getattr(self, what) + 1)

    @property
    def did_work(self) -> bool:
        return bool(self.submitted or self.requeued or self.completed or self.failed or self.released)


class JobRunner:
    def __init__(
        self,
        *,
        runner_id: str = RUNNER_ID,
        threads: int | None = None,
        clock: Callable[[], datetime] = timezone.now,
    ):
        self.runner_id = runner_id
        self.clock = clock
        self.pool = ThreadPoolExecutor(
            max_workers=threads or settings.MMM_JOB_RUNNER_THREADS, thread_name_prefix="job-call"
        )

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def run_pass(self) -> PassSummary:
        summary = PassSummary()
        # One small read when no job is queued, being submitted or running (most passes of a
        # runner while nobody makes images or videos), instead of the four a pass makes.
        if not Job.objects.filter(status__in=(JobStatus.QUEUED, *ACTIVE)).exists():
            return summary
        now = self.clock()
        summary.released = scheduler.release_stale(now=now)
        for job in _queued_too_long(now):
            error = (
                f"no worker of model {job.model_name!r} took the job within {settings.MMM_JOB_MAX_QUEUE_SECONDS:g} s"
            )
            if job.last_error:
                error += f"; last: {job.last_error}"
            summary.count("failed" if job_fail(job, error=error, code="no_worker", runner_id=None, now=now) else "")
        claimed = scheduler.claim_submissions(runner_id=self.runner_id, now=now)
        for job, outcome in zip(claimed, self.pool.map(submit_call, claimed), strict=True):
            summary.count(record_submission(job, outcome, runner_id=self.runner_id, now=self.clock()))
        due = scheduler.claim_due_polls(runner_id=self.runner_id, now=self.clock(), limit=_POLLS_PER_PASS)
        lost = [job for job in due if job.worker is None]
        for job in lost:
            error = "its worker was removed (taken offline) while the job ran; the job cannot be polled elsewhere"
            summary.count(
                "failed" if job_fail(job, error=error, code="worker_lost", runner_id=self.runner_id, now=now) else ""
            )
        due = [job for job in due if job.worker is not None]
        finished = []
        for job, outcome in zip(due, self.pool.map(poll_call, due), strict=True):
            what = record_poll(job, outcome, runner_id=self.runner_id, now=self.clock())
            if what == "fetch" and scheduler.extend_for_fetch(job, runner_id=self.runner_id, now=self.clock()):
                finished.append((job, outcome.polled.output))
            summary.count(what)
        fetched = self.pool.map(lambda pair: fetch_call(*pair), finished)
        for (job, _), outcome in zip(finished, fetched, strict=True):
            summary.count(record_fetch(job, outcome, runner_id=self.runner_id, now=self.clock()))
        return summary

    def advance(self, job: Job) -> str:
        """Poll one job now, in this thread (a client's GET asking early), fetching its result
        if it is done. The caller has claimed it (scheduler.claim)."""
        if job.worker is None:
            return ""  # the runner fails it on its next pass
        outcome = poll_call(job)
        what = record_poll(job, outcome, runner_id=self.runner_id, now=self.clock())
        if what == "fetch" and scheduler.extend_for_fetch(job, runner_id=self.runner_id, now=self.clock()):
            what = record_fetch(job, fetch_call(job, outcome.polled.output), runner_id=self.runner_id, now=self.clock())
        return what


def _queued_too_long(now: datetime) -> list[Job]:
    cutoff = now - timedelta(seconds=settings.MMM_JOB_MAX_QUEUE_SECONDS)
    return list(Job.objects.filter(status=JobStatus.QUEUED, created_at__lt=cutoff)[:100])
