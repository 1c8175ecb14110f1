"""A job: one asynchronous image or video generation, as a durable record.

The gateway's own public id, the model, the worker that accepted it and the upstream's id of
it there, where it is (status, progress), its timings, error and result, the key that owns it
and when it expires. Runners (``jobs.runner``) move it along with conditional updates under a
lease, so a runner that dies mid-job leaves a lease that runs out and another takes over.
"""

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from inference.protocols.job import COMPLETED, FAILED, IN_PROGRESS, QUEUED


class JobKind(models.TextChoices):
    VIDEO = "video", "video (/v1/videos)"
    IMAGE = "image", "image (/v1/images/jobs)"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "queued in the gateway"
    SUBMITTING = "submitting", "being submitted"
    RUNNING = "running", "running on its worker"
    COMPLETED = "completed", "completed"
    FAILED = "failed", "failed"


# Jobs that hold one of their worker's capacity slots.
ACTIVE = (JobStatus.SUBMITTING, JobStatus.RUNNING)
FINISHED = (JobStatus.COMPLETED, JobStatus.FAILED)
_PREFIX = {JobKind.VIDEO: "video_", JobKind.IMAGE: "imgjob_"}


def new_public_id(kind: str) -> str:
    return _PREFIX[kind] + uuid.uuid4().hex


class JobQuerySet(models.QuerySet):
    def owned_by(self, caller) -> "JobQuerySet":
        """The jobs ``caller`` may see: its key's own, all for an admin; without a key (keys
        off, `make serve`) the jobs made without one."""
        if caller is None:
            return self.filter(api_key__isnull=True)
        if caller.is_admin:
            return self
        if caller.api_key_id is None:
            return self.none()
        return self.filter(api_key_id=caller.api_key_id)

    def lease_free(self, now: datetime) -> "JobQuerySet":
        return self.filter(models.Q(lease_expires_at__isnull=True) | models.Q(lease_expires_at__lt=now))


class Job(models.Model):
    public_id = models.CharField(max_length=64, unique=True, editable=False)
    kind = models.CharField(max_length=8, choices=JobKind.choices)
    model_name = models.CharField(max_length=200)
    # The owner: a key's jobs are visible to it (and admins) only. The label outlives the key.
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    owner = models.CharField(max_length=300, blank=True, help_text="The key that made the job, as it was named then.")
    prompt = models.TextField()
    params = models.JSONField(default=dict, blank=True, help_text="size, seconds, input_reference as asked for.")

    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    upstream_status = models.CharField(max_length=100, blank=True, help_text="The worker's own word for it.")
    # That word in ours, while it runs: a worker may hold a job in its own queue first.
    upstream_phase = models.CharField(max_length=16, blank=True)
    progress = models.PositiveSmallIntegerField(default=0)
    # The worker that accepted the job: every poll, fetch and cancel goes to it, never another.
    worker = models.ForeignKey("registry.Worker", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    worker_label = models.CharField("worker as it was", max_length=2300, blank=True)
    upstream_id = models.CharField(max_length=500, blank=True)
    tried_worker_ids = models.JSONField(default=list, blank=True, help_text="Workers that failed to take it.")
    submit_attempts = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    last_error = models.TextField(blank=True, help_text="The last failed call, while the job goes on.")

    result_name = models.CharField(max_length=500, blank=True, help_text="In the job_results storage.")
    result_url = models.TextField(blank=True, help_text="The upstream's URL of the output (MMM_JOB_RESULTS=link).")
    result_content_type = models.CharField(max_length=200, blank=True)
    result_bytes = models.BigIntegerField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    submitted_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    not_before = models.DateTimeField(null=True, blank=True, help_text="Not submitted again before (backoff).")
    next_poll_at = models.DateTimeField(null=True, blank=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    last_contact_at = models.DateTimeField(null=True, blank=True, help_text="The worker last answered about it.")
    # Which runner (host:pid:random) holds the job, until when.
    lease_owner = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            # The scheduler's queue scan: queued jobs of a model, oldest first (jobs.scheduler).
            models.Index(fields=["status", "model_name", "id"], name="job_queue"),
            # The runner's poll scan: running jobs that are due (jobs.runner).
            models.Index(fields=["status", "next_poll_at"], name="job_poll_due"),
            # GET /v1/videos: a key's own jobs of one kind, newest first.
            models.Index(fields=["api_key", "kind", "id"], name="job_owner_list"),
            # prune_jobs.
            models.Index(fields=["expires_at"], name="job_expiry"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.model_name}, {self.status})"

    @property
    def public_status(self) -> str:
        """queued, in_progress, completed or failed, as /v1/videos says them."""
        if self.status in (JobStatus.QUEUED, JobStatus.SUBMITTING):
            return QUEUED
        if self.status == JobStatus.RUNNING:
            return QUEUED if self.upstream_phase == QUEUED else IN_PROGRESS
        return COMPLETED if self.status == JobStatus.COMPLETED else FAILED

    @property
    def queue_wait(self) -> timedelta | None:
        return (self.submitted_at - self.created_at) if self.submitted_at else None

    @property
    def run_time(self) -> timedelta | None:
        return (self.completed_at - self.submitted_at) if self.completed_at and self.submitted_at else None

    def poll_interval(self, now: datetime) -> float:
        """Seconds to the next poll: a tenth of the job's age on its worker, within bounds."""
        age = (now - (self.submitted_at or now)).total_seconds()
        return min(max(age / 10, settings.MMM_JOB_POLL_MIN_SECONDS), settings.MMM_JOB_POLL_MAX_SECONDS)
