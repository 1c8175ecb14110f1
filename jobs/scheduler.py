"""Which queued job goes to which job worker, claimed so that no two runners submit one job
and no worker runs more than its capacity, on any number of hosts.

A claim is a conditional UPDATE (``probe_workers`` claims rows the same way): it applies only
if the job is still as this runner read it, and it carries a lease. Slots are counted under a
lock on the model's worker rows (SELECT ... FOR UPDATE on PostgreSQL; SQLite's write
transactions are serialized already), so two runners that look at the same free slot at the
same moment cannot both fill it. A runner that dies holding a lease holds it only until it runs
out: ``release_stale`` puts an unfinished submission back in the queue and any runner's next
poll scan takes an abandoned running job over.
"""

import bisect
from collections import Counter
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Q

from jobs.models import ACTIVE, Job, JobStatus
from registry.models import Worker, WorkerKind

# Queued jobs of one model looked at per pass: enough to fill every free slot fairly.
_QUEUE_WINDOW = 500
# How far back "served least recently" looks when choosing between keys.
_FAIRNESS_MEMORY = timedelta(hours=1)
_NEVER = datetime.min.replace(tzinfo=UTC)


def queue_position(job: Job) -> int | None:
    """1 for the next job of its model to be submitted (by arrival: fairness across keys may
    let another key's job go first), None once it has left the queue."""
    if job.status != JobStatus.QUEUED:
        return None
    return Job.objects.filter(status=JobStatus.QUEUED, model_name=job.model_name, id__lt=job.id).count() + 1


def queue_positions(jobs: list[Job]) -> dict[int, int]:
    """``queue_position`` of each queued job of ``jobs``, in one query (a page of a list)."""
    waiting = [job for job in jobs if job.status == JobStatus.QUEUED]
    if not waiting:
        return {}
    newest = max(job.id for job in waiting)
    ahead: dict[str, list[int]] = {}
    rows = Job.objects.filter(
        status=JobStatus.QUEUED, model_name__in={job.model_name for job in waiting}, id__lte=newest
    ).order_by("id")
    for model_name, job_id in rows.values_list("model_name", "id"):
        ahead.setdefault(model_name, []).append(job_id)
    return {job.id: bisect.bisect_left(ahead.get(job.model_name, []), job.id) + 1 for job in waiting}


def lease_seconds(worker: Worker | None, *, fetching: bool = False) -> float:
    """How long a claim on a job of ``worker`` lasts: its call's timeout, and a margin. Short,
    so a job whose runner died is taken over soon; a fetch extends it for the download."""
    call = settings.MMM_JOB_FETCH_TIMEOUT if fetching else (worker.effective_timeout if worker else 0)
    return call + settings.MMM_JOB_LEASE_SECONDS


def claim_submissions(*, runner_id: str, now: datetime) -> list[Job]:
    """Claim queued jobs for every free slot of every model's job workers; each comes back
    with ``worker`` set to the worker it is to be submitted to."""
    claimed: list[Job] = []
    waiting = Q(not_before__isnull=True) | Q(not_before__lte=now)
    # order_by(): the model's default ordering (by id) would make DISTINCT one row per job.
    models = (
        Job.objects.filter(waiting, status=JobStatus.QUEUED).order_by().values_list("model_name", flat=True).distinct()
    )
    for model_name in list(models):
        claimed += _claim_for_model(model_name=model_name, runner_id=runner_id, now=now, waiting=waiting)
    return claimed


def _claim_for_model(*, model_name: str, runner_id: str, now: datetime, waiting: Q) -> list[Job]:
    worker_ids = list(
        Worker.objects.routable(now).filter(model_name=model_name, kind=WorkerKind.JOB).values_list("pk", flat=True)
    )
    if not worker_ids:
        return []
    claimed = []
    with transaction.atomic():
        workers = list(Worker.objects.select_for_update().filter(pk__in=worker_ids).order_by("pk"))
        active = dict(
            Job.objects.filter(worker__in=worker_ids, status__in=ACTIVE)
            .values_list("worker")
            .annotate(n=Count("id"))
            .values_list("worker", "n")
        )
        free = {worker.pk: worker.job_capacity - active.get(worker.pk, 0) for worker in workers}
        slots = sum(max(count, 0) for count in free.values())
        if slots <= 0:
            return []
        queued = list(
            Job.objects.filter(waiting, status=JobStatus.QUEUED, model_name=model_name).order_by("id")[:_QUEUE_WINDOW]
        )
        # Fair across keys: the next job is the oldest (FIFO within a key) of the key with the
        # fewest jobs of this model running, and of those the one served least recently, so one
        # key's thousand jobs do not starve another's one.
        running = Counter(
            Job.objects.filter(model_name=model_name, status__in=ACTIVE).values_list("api_key_id", flat=True)
        )
        served = dict(
            Job.objects.filter(model_name=model_name, submitted_at__gte=now - _FAIRNESS_MEMORY)
            .values("api_key_id")
            .annotate(last=Max("submitted_at"))
            .values_list("api_key_id", "last")
        )
        by_id = {worker.pk: worker for worker in workers}
        lease_until = {pk: now + timedelta(seconds=lease_seconds(worker)) for pk, worker in by_id.items()}
        while slots > 0 and queued:
            job = min(
                queued,
                key=lambda candidate: (
                    running[candidate.api_key_id],
                    served.get(candidate.api_key_id, _NEVER),
                    candidate.id,
                ),
            )
            queued.remove(job)
            worker_id = _worker_for(job, free)
            if worker_id is None:
                continue
            taken = Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
                status=JobStatus.SUBMITTING,
                worker_id=worker_id,
                lease_owner=runner_id,
                lease_expires_at=lease_until[worker_id],
            )
            if not taken:
                continue  # deleted by its owner since it was read
            free[worker_id] -= 1
            slots -= 1
            running[job.api_key_id] += 1
            served[job.api_key_id] = now
            job.status, job.worker, job.lease_owner = JobStatus.SUBMITTING, by_id[worker_id], runner_id
            claimed.append(job)
    return claimed


def _worker_for(job: Job, free: dict[int, int]) -> int | None:
    """The worker with the most free slots that has not already failed this job (spreading
    jobs over the model's workers); once every free one has failed it, any free one."""
    open_slots = [pk for pk, count in free.items() if count > 0]
    if not open_slots:
        return None
    untried = [pk for pk in open_slots if pk not in job.tried_worker_ids] or open_slots
    return max(untried, key=lambda pk: (free[pk], -pk))


def release_stale(*, now: datetime) -> int:
    """Submissions whose runner died (its lease ran out) go back to the queue.

    The runner may have died after the worker accepted the job and before the upstream id was
    written; that job is submitted again (at least once, never lost). The window is one HTTP
    answer wide.
    """
    stale = Job.objects.filter(status=JobStatus.SUBMITTING, lease_expires_at__lt=now)
    # A read first: a looping runner checks every pass, and an UPDATE is a write transaction
    # (on SQLite the database's one write lock) even when it changes nothing.
    if not stale.exists():
        return 0
    return stale.update(status=JobStatus.QUEUED, worker=None, lease_owner="", lease_expires_at=None)


def claim_due_polls(*, runner_id: str, now: datetime, limit: int) -> list[Job]:
    """Claim running jobs whose next poll is due and that no live runner holds."""
    due = list(
        Job.objects.lease_free(now)
        .filter(status=JobStatus.RUNNING, next_poll_at__lte=now)
        .select_related("worker")
        .order_by("next_poll_at")[:limit]
    )
    return [job for job in due if claim(job, runner_id=runner_id, now=now)]


def claim(job: Job, *, runner_id: str, now: datetime) -> bool:
    """Take the lease of one running job, if nobody holds it (also what an early poll does)."""
    seconds = lease_seconds(job.worker)
    taken = (
        Job.objects.lease_free(now)
        .filter(pk=job.pk, status=JobStatus.RUNNING)
        .update(lease_owner=runner_id, lease_expires_at=now + timedelta(seconds=seconds), last_polled_at=now)
    )
    if taken:
        job.lease_owner = runner_id
        job.last_polled_at = now
    return bool(taken)


def extend_for_fetch(job: Job, *, runner_id: str, now: datetime) -> bool:
    """Hold a job whose worker says it is done for as long as its download may take."""
    seconds = lease_seconds(job.worker, fetching=True)
    return bool(
        Job.objects.filter(pk=job.pk, lease_owner=runner_id, status=JobStatus.RUNNING).update(
            lease_expires_at=now + timedelta(seconds=seconds)
        )
    )
