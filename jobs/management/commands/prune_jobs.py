"""manage.py prune_jobs: delete jobs past their expiry, with their stored results."""

from django.core.management.base import BaseCommand

from jobs.services import jobs_prune


class Command(BaseCommand):
    help = (
        "Delete image and video jobs whose expiry (MMM_JOB_RETENTION_SECONDS after they ended) has passed, "
        "and their results in the job_results storage. run_jobs --loop does this every minute too."
    )

    def handle(self, *args, **options) -> None:
        self.stdout.write(f"pruned {jobs_prune()} expired job(s)")
