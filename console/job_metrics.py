"""Job gauges for /metrics, read from the database at scrape time like the workers' health:
the same whichever gateway process answers, and whichever runner moved the jobs."""

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class JobStateCollector(Collector):
    def collect(self):
        from jobs.models import ACTIVE, Job, JobStatus
        from registry.models import Worker, WorkerKind

        jobs = GaugeMetricFamily(
            "mmm_jobs",
            "Image and video jobs kept (until they expire), by model and status (queued, submitting, running, "
            "completed, failed).",
            labels=["model", "status"],
        )
        for model_name, status, count in (
            Job.objects.values_list("model_name", "status")
            .annotate(n=Count("id"))
            .values_list("model_name", "status", "n")
        ):
            jobs.add_metric([model_name, status], float(count))
        oldest = GaugeMetricFamily(
            "mmm_job_oldest_queued_seconds",
            "How long the oldest job still queued in the gateway has waited, by model.",
            labels=["model"],
        )
        now = timezone.now()
        for model_name, created in (
            Job.objects.filter(status=JobStatus.QUEUED)
            .values_list("model_name")
            .annotate(first=Min("created_at"))
            .values_list("model_name", "first")
        ):
            oldest.add_metric([model_name], (now - created).total_seconds())
        labels = ["worker", "model"]
        capacity = GaugeMetricFamily("mmm_job_worker_capacity", "Jobs a job worker runs at once.", labels=labels)
        used = GaugeMetricFamily(
            "mmm_job_worker_slots_used", "Jobs being submitted to or running on the job worker now.", labels=labels
        )
        active = dict(
            Job.objects.filter(status__in=ACTIVE, worker__isnull=False)
            .values_list("worker")
            .annotate(n=Count("id"))
            .values_list("worker", "n")
        )
        for pk, model_name, slots in Worker.objects.filter(kind=WorkerKind.JOB).values_list(
            "pk", "model_name", "capacity"
        ):
            capacity.add_metric([str(pk), model_name], float(slots or 1))
            used.add_metric([str(pk), model_name], float(active.get(pk, 0)))
        yield from (jobs, oldest, capacity, used)
