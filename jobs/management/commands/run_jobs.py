"""manage.py run_jobs: submit queued jobs and poll running ones, once (for cron) or in a loop."""

import json
import threading
import time
from dataclasses import asdict

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError

from jobs.runner import JobRunner
from jobs.services import jobs_prune
from jobs.wake import RunnerWake
from mmm.command_loop import KeptConnection, add_loop_arguments, parent_gone, stop_on_signals

# Seconds between passes while there is work, and the first wait once there is none (it then
# doubles up to MMM_JOB_IDLE_MAX_SECONDS; a job queued on this host wakes the runner at once).
_BUSY_SECONDS = 0.05
_IDLE_SECONDS = 0.2
# Expired jobs are pruned this often by a looping runner (prune_jobs does it from cron too).
_PRUNE_EVERY_SECONDS = 60.0


class Command(BaseCommand):
    help = (
        "Submit queued image and video jobs to their models' job workers as slots free up, poll running "
        "ones (each at its own backoff), and store finished results. Any number may run, on any number of "
        "hosts: jobs are claimed with conditional updates and leases, so none is run twice or lost."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_loop_arguments(parser, keeps="running passes")

    def handle(self, *args, loop: bool, parent_pid: int | None, as_json: bool, **options) -> None:
        runner = JobRunner()
        look_now = threading.Event()  # a job was queued on this host, or a stop signal came
        stop = stop_on_signals(wake=look_now) if loop else threading.Event()
        wake = RunnerWake(path=settings.MMM_JOB_WAKE_SOCKET if loop else "", event=look_now)
        pruned_at = 0.0
        idle_wait = _IDLE_SECONDS
        kept = KeptConnection()
        try:
            while True:
                started = time.monotonic()
                kept.before_pass()
                try:
                    summary = runner.run_pass()
                    if time.monotonic() - pruned_at > _PRUNE_EVERY_SECONDS or not loop:
                        summary.pruned = jobs_prune()
                        pruned_at = time.monotonic()
                except DatabaseError as exc:
                    # The database is away: nothing can be claimed or recorded. The jobs wait
                    # in it, and the next pass goes on from there.
                    self.stderr.write(f"jobs pass skipped, the database is unavailable: {type(exc).__name__}")
                    summary = None
                kept.after_pass(failed=summary is None)
                if summary is not None and (not loop or summary.did_work):
                    self._report(summary, seconds=time.monotonic() - started, as_json=as_json)
                if not loop:
                    return
                if parent_gone(parent_pid):
                    return
                if summary is not None and summary.did_work:
                    wait, idle_wait = _BUSY_SECONDS, _IDLE_SECONDS
                else:
                    wait, idle_wait = idle_wait, min(idle_wait * 2, settings.MMM_JOB_IDLE_MAX_SECONDS)
                if look_now.wait(wait):
                    look_now.clear()
                    idle_wait = _IDLE_SECONDS
                if stop.is_set():
                    return
        finally:
            wake.close()
            runner.close()

    def _report(self, summary, *, seconds: float, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps({**asdict(summary), "seconds": round(seconds, 3)}))
            return
        self.stdout.write(
            f"jobs: {summary.submitted} submitted, {summary.requeued} requeued, {summary.completed} completed, "
            f"{summary.failed} failed, {summary.running} still running, {summary.unanswered} unanswered, "
            f"{summary.released} taken over, {summary.pruned} pruned, in {seconds:.2f} s"
        )
        self.stdout.flush()
