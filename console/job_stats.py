"""The dashboard's jobs panel: per model, jobs queued and running at each bucket's end, and
completed and failed within each bucket, rebuilt from each job's own timestamps (created,
submitted, ended), so no history table is needed. Jobs are kept for MMM_JOB_RETENTION_SECONDS
(a day by default), so a window holds at most that many jobs' rows."""

import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Q

from jobs.models import Job, JobStatus

# Rows read at most for one page: a busier window is drawn from its newest jobs.
_MAX_ROWS = 50_000


@dataclass
class JobModelStats:
    model_name: str
    buckets: int
    queued: list[int] = field(default_factory=list)
    running: list[int] = field(default_factory=list)
    completed: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)  # seconds in the gateway's queue
    runs: list[float] = field(default_factory=list)  # seconds on a worker, of completed jobs

    def __post_init__(self) -> None:
        for series in (self.queued, self.running, self.completed, self.failed):
            series.extend([0] * self.buckets)

    @property
    def queued_now(self) -> int:
        return self.queued[-1]

    @property
    def running_now(self) -> int:
        return self.running[-1]

    @property
    def total_completed(self) -> int:
        return sum(self.completed)

    @property
    def total_failed(self) -> int:
        return sum(self.failed)

    @property
    def median_wait(self) -> float | None:
        return statistics.median(self.waits) if self.waits else None

    @property
    def median_run(self) -> float | None:
        return statistics.median(self.runs) if self.runs else None


def job_stats(*, starts: list[datetime], bucket: timedelta, now: datetime) -> list[JobModelStats]:
    first = starts[0]
    rows = (
        Job.objects.filter(Q(completed_at__isnull=True) | Q(completed_at__gte=first), created_at__lte=now)
        .order_by("-id")
        .values_list("model_name", "status", "created_at", "submitted_at", "completed_at")[:_MAX_ROWS]
    )
    by_model: dict[str, JobModelStats] = {}
    ends = [start + bucket for start in starts[:-1]] + [now]
    for model_name, status, created, submitted, ended in rows:
        stats = by_model.setdefault(model_name, JobModelStats(model_name, len(starts)))
        for index, end in enumerate(ends):
            if created > end or (ended is not None and ended <= end):
                continue
            if submitted is not None and submitted <= end:
                stats.running[index] += 1
            else:
                stats.queued[index] += 1
        if ended is not None and ended >= first:
            index = min(int((ended - first) / bucket), len(starts) - 1)
            (stats.completed if status == JobStatus.COMPLETED else stats.failed)[index] += 1
        if submitted is not None and submitted >= first:
            stats.waits.append((submitted - created).total_seconds())
            if status == JobStatus.COMPLETED and ended is not None:
                stats.runs.append((ended - submitted).total_seconds())
    return sorted(by_model.values(), key=lambda stats: stats.model_name)
