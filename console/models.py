"""What the console remembers: one row per completion request, one row per probe."""

import math

from django.db import models

# Latency histogram classes: class n holds latencies below LATENCY_BASE_MS * LATENCY_GROWTH**n.
# Stored with each row so the dashboard computes p50/p95 with a GROUP BY on integers that works
# the same on SQLite and PostgreSQL; 2**(1/8) keeps any percentile within 9 % of the exact one.
LATENCY_BASE_MS = 1.0
LATENCY_GROWTH = 2 ** (1 / 8)
LATENCY_CLASSES = 200  # up to about 30 hours; anything slower lands in the last class


def latency_class(ms: float) -> int:
    """The histogram class of a latency in milliseconds (0 for anything under LATENCY_BASE_MS)."""
    if ms < LATENCY_BASE_MS:
        return 0
    return min(int(math.log(ms / LATENCY_BASE_MS, LATENCY_GROWTH)) + 1, LATENCY_CLASSES - 1)


def latency_class_bounds(index: int) -> tuple[float, float]:
    """The (lower, upper) latency in ms of a histogram class."""
    if index == 0:
        return 0.0, LATENCY_BASE_MS
    return LATENCY_BASE_MS * LATENCY_GROWTH ** (index - 1), LATENCY_BASE_MS * LATENCY_GROWTH**index


def epoch_minute(moment) -> int:
    return int(moment.timestamp() // 60)


class RequestLog(models.Model):
    """One completion request as the client saw it; written in batches off the request path."""

    created_at = models.DateTimeField(help_text="When the request arrived.")
    # Whole minutes since 1970: the dashboard groups by minute / bucket width with integer
    # arithmetic, which needs no date functions and is the same on every database.
    minute = models.IntegerField(editable=False)
    request_id = models.CharField(max_length=128, blank=True)
    model_name = models.CharField(max_length=200)
    # No database constraint: a row waits in the queue for up to a second (a stream's row for as
    # long as the stream), and its worker may be taken offline meanwhile; one such row must not
    # make the whole batch, and every later one, fail. Deleting a worker still empties the field.
    worker = models.ForeignKey(
        "registry.Worker", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_constraint=False
    )
    # The worker's URL when it answered, without query string: still readable once it is deleted.
    worker_url = models.CharField(max_length=2000, blank=True)
    # Client keys arrive with access control; until then this stays empty.
    client_key_prefix = models.CharField(max_length=32, blank=True)
    status = models.PositiveSmallIntegerField(help_text="HTTP status returned to the client.")
    error_code = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True, help_text="The error message the client got (secrets masked).")
    latency_ms = models.FloatField(help_text="Total time in the gateway, retries included.")
    latency_class = models.PositiveSmallIntegerField(editable=False)
    upstream_ms = models.FloatField(null=True, blank=True, help_text="Time of the answering upstream call.")
    attempts = models.PositiveSmallIntegerField(default=0)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    total_tokens = models.PositiveIntegerField(null=True, blank=True)
    stream = models.BooleanField(default=False)
    # Only with MMM_REQUEST_LOG_CONTENT=true.
    prompt = models.TextField(blank=True)
    answer = models.TextField(blank=True)

    class Meta:
        indexes = [
            # console.dashboard.model_series: the window's rows by minute, answered from the index.
            models.Index(fields=["minute", "model_name", "latency_class", "status"], name="requestlog_dashboard"),
            # console.dashboard.worker_traffic.
            models.Index(fields=["minute", "worker", "status"], name="requestlog_worker_traffic"),
            # console.dashboard.worker_last_errors: the newest errors of one worker.
            models.Index(
                fields=["worker", "-created_at"], name="requestlog_worker_errors", condition=models.Q(status__gte=500)
            ),
            # prune_requests and the admin's list, newest first.
            models.Index(fields=["created_at"], name="requestlog_created"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.model_name} {self.status}"

    @property
    def is_error(self) -> bool:
        return self.status >= 500


class ProbeRecord(models.Model):
    """One probe of one worker, for the health timeline (written by registry.health)."""

    worker = models.ForeignKey("registry.Worker", on_delete=models.CASCADE, related_name="+")
    checked_at = models.DateTimeField()
    minute = models.IntegerField(editable=False)  # as RequestLog.minute
    ok = models.BooleanField()
    latency_ms = models.FloatField()
    error = models.TextField(blank=True)

    class Meta:
        indexes = [
            # console.dashboard.worker_timelines.
            models.Index(fields=["minute", "worker", "ok"], name="proberecord_timeline"),
            # console.dashboard.worker_last_errors: the newest failed probes of one worker.
            models.Index(
                fields=["worker", "-checked_at"], name="proberecord_worker_failures", condition=models.Q(ok=False)
            ),
            # prune_requests.
            models.Index(fields=["checked_at"], name="proberecord_checked"),
        ]

    def __str__(self) -> str:
        return f"worker {self.worker_id} {'ok' if self.ok else 'failed'} at {self.checked_at:%Y-%m-%d %H:%M:%S}"
