"""What the dashboard shows, aggregated in the database.

Every query groups integers (RequestLog.minute / bucket width, RequestLog.latency_class), so
the database returns a few thousand small rows however many requests the window holds, and the
same SQL runs on SQLite and PostgreSQL. Percentiles come from the latency histogram: within
9 % of the exact value (see console.models.LATENCY_GROWTH). An error is a 5xx: the gateway or
an upstream failed; 4xx answers are the client's to fix.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db.models import Case, Count, F, IntegerField, Sum, Value, When
from django.db.models.functions import Cast

from console.models import ProbeRecord, RequestLog, epoch_minute, latency_class_bounds
from registry.models import Worker

LAST_ERRORS = 5


@dataclass(frozen=True)
class TimeWindow:
    name: str
    label: str
    minutes: int
    bucket_minutes: int

    @property
    def buckets(self) -> int:
        return self.minutes // self.bucket_minutes


WINDOWS = {
    "hour": TimeWindow("hour", "last hour", 60, 1),
    "day": TimeWindow("day", "last day", 24 * 60, 15),
}


@dataclass(frozen=True)
class Span:
    """The buckets of a window ending now: bucket n covers minutes [first + n*width, +width)."""

    window: TimeWindow
    first_bucket: int  # absolute: epoch minute // bucket width

    @classmethod
    def ending_at(cls, window: TimeWindow, now: datetime) -> "Span":
        return cls(window, epoch_minute(now) // window.bucket_minutes - window.buckets + 1)

    @property
    def first_minute(self) -> int:
        return self.first_bucket * self.window.bucket_minutes

    def start_of(self, index: int) -> datetime:
        minute = (self.first_bucket + index) * self.window.bucket_minutes
        return datetime.fromtimestamp(minute * 60, tz=UTC)

    def bucket_expression(self):
        # Integer division in SQL on both databases: minute and width are integers.
        return Cast(F("minute") / self.window.bucket_minutes, IntegerField())


class LatencyHistogram:
    def __init__(self) -> None:
        self.counts: dict[int, int] = defaultdict(int)
        self.total = 0

    def add(self, latency_class: int, count: int) -> None:
        self.counts[latency_class] += count
        self.total += count

    def percentile(self, fraction: float) -> float | None:
        """The latency (ms) below which ``fraction`` of the requests fall, interpolated in its class."""
        if not self.total:
            return None
        rank = fraction * self.total
        seen = 0
        for index in sorted(self.counts):
            count = self.counts[index]
            if seen + count >= rank:
                lower, upper = latency_class_bounds(index)
                return lower + (upper - lower) * max(rank - seen, 0) / count
            seen += count
        return latency_class_bounds(max(self.counts))[1]


@dataclass
class ModelStats:
    model_name: str
    buckets: int
    bucket_minutes: int
    requests: list[int] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)
    histograms: list[LatencyHistogram] = field(default_factory=list)
    overall: LatencyHistogram = field(default_factory=LatencyHistogram)

    def __post_init__(self) -> None:
        self.requests = [0] * self.buckets
        self.errors = [0] * self.buckets
        self.histograms = [LatencyHistogram() for _ in range(self.buckets)]

    @property
    def total_requests(self) -> int:
        return sum(self.requests)

    @property
    def total_errors(self) -> int:
        return sum(self.errors)

    @property
    def error_rate(self) -> float | None:
        return self.total_errors / self.total_requests if self.total_requests else None

    def absorb(self, other: "ModelStats") -> None:
        """Add ``other``'s counts to these, bucket by bucket."""
        for index in range(self.buckets):
            self.requests[index] += other.requests[index]
            self.errors[index] += other.errors[index]
            for latency_class, count in other.histograms[index].counts.items():
                self.histograms[index].add(latency_class, count)
        for latency_class, count in other.overall.counts.items():
            self.overall.add(latency_class, count)

    def requests_per_minute(self) -> list[float]:
        return [count / self.bucket_minutes for count in self.requests]

    def error_rates(self) -> list[float | None]:
        return [errors / count if count else None for count, errors in zip(self.requests, self.errors, strict=True)]

    def latency_percentiles(self, fraction: float) -> list[float | None]:
        return [histogram.percentile(fraction) for histogram in self.histograms]


def model_stats(*, span: Span) -> list[ModelStats]:
    """Requests, errors and the latency histogram per model and bucket: one GROUP BY."""
    rows = (
        RequestLog.objects.filter(minute__gte=span.first_minute)
        .annotate(bucket=span.bucket_expression())
        .values("model_name", "bucket", "latency_class")
        .annotate(requests=Count("*"), errors=_count_where(status__gte=500))
        .order_by()
    )
    by_model: dict[str, ModelStats] = {}
    window = span.window
    for row in rows:
        index = row["bucket"] - span.first_bucket
        if not 0 <= index < window.buckets:
            continue  # written with a clock ahead of this one
        stats = by_model.get(row["model_name"])
        if stats is None:
            stats = by_model[row["model_name"]] = ModelStats(row["model_name"], window.buckets, window.bucket_minutes)
        stats.requests[index] += row["requests"]
        stats.errors[index] += row["errors"] or 0
        stats.histograms[index].add(row["latency_class"], row["requests"])
        stats.overall.add(row["latency_class"], row["requests"])
    return sorted(by_model.values(), key=lambda stats: stats.model_name)


def unregistered_grouped(stats: list[ModelStats], *, registered: set[str]) -> tuple[list[ModelStats], list[str]]:
    """``stats`` with every model name that no worker is registered under (typos, probes of
    the API, models since removed) added into one last row; returns (rows, those names)."""
    known = [row for row in stats if row.model_name in registered]
    unknown = [row for row in stats if row.model_name not in registered]
    if not unknown:
        return known, []
    other = ModelStats(f"other: {len(unknown)} unregistered name(s)", unknown[0].buckets, unknown[0].bucket_minutes)
    for row in unknown:
        other.absorb(row)
    return [*known, other], [row.model_name for row in unknown]


@dataclass
class WorkerCell:
    requests: int = 0
    errors: int = 0
    probes: int = 0
    failed_probes: int = 0

    @property
    def state(self) -> str:
        """What the timeline shows for this bucket: probes decide; live errors alone make it amber."""
        if self.probes:
            if self.failed_probes == self.probes:
                return "down"
            if self.failed_probes:
                return "flapping"
        if self.requests and self.errors == self.requests:
            return "down"
        if self.errors:
            return "flapping"
        if self.probes or self.requests:
            return "up"
        return "none"


@dataclass
class WorkerErrorLine:
    at: datetime
    source: str  # "request" or "probe"
    text: str


@dataclass
class WorkerStats:
    worker: Worker
    cells: list[WorkerCell]
    last_errors: list[WorkerErrorLine] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(cell.requests for cell in self.cells)

    @property
    def errors(self) -> int:
        return sum(cell.errors for cell in self.cells)


def worker_stats(*, span: Span) -> list[WorkerStats]:
    """Per worker: traffic and probes per bucket (two GROUP BYs), and its last errors."""
    window = span.window
    stats = {
        worker.pk: WorkerStats(worker, [WorkerCell() for _ in range(window.buckets)]) for worker in Worker.objects.all()
    }
    traffic = (
        # Grouped by worker_id + 0, not worker_id: SQLite would otherwise walk the foreign key's
        # index to get the grouping order and read every row of the table (1 s on a million
        # rows) instead of the window's slice of the covering index (bench/dashboard.py).
        RequestLog.objects.filter(minute__gte=span.first_minute)
        .annotate(bucket=span.bucket_expression(), worker_key=F("worker_id") + 0)
        .values("worker_key", "bucket")
        .annotate(requests=Count("*"), errors=_count_where(status__gte=500))
        .order_by()
    )
    for row in traffic:
        cell = _cell(stats, span, row["worker_key"], row["bucket"])
        if cell is not None:
            cell.requests += row["requests"]
            cell.errors += row["errors"] or 0
    probes = (
        ProbeRecord.objects.filter(minute__gte=span.first_minute)
        .annotate(bucket=span.bucket_expression())
        .values("worker_id", "bucket")
        .annotate(probes=Count("*"), failed=_count_where(ok=False))
        .order_by()
    )
    for row in probes:
        cell = _cell(stats, span, row["worker_id"], row["bucket"])
        if cell is not None:
            cell.probes += row["probes"]
            cell.failed_probes += row["failed"] or 0
    for worker_id, worker in stats.items():
        worker.last_errors = worker_last_errors(worker_id=worker_id)
    return list(stats.values())


def worker_last_errors(*, worker_id: int, limit: int = LAST_ERRORS) -> list[WorkerErrorLine]:
    """The newest failed requests and probes of one worker, newest first (two index lookups)."""
    requests = (
        RequestLog.objects.filter(worker_id=worker_id, status__gte=500)
        .order_by("-created_at")
        .values_list("created_at", "status", "error_code", "error")[:limit]
    )
    probes = (
        ProbeRecord.objects.filter(worker_id=worker_id, ok=False)
        .order_by("-checked_at")
        .values_list("checked_at", "error")[:limit]
    )
    lines = [WorkerErrorLine(at, "request", f"HTTP {status} {code}: {error}") for at, status, code, error in requests]
    lines += [WorkerErrorLine(at, "probe", error) for at, error in probes]
    return sorted(lines, key=lambda line: line.at, reverse=True)[:limit]


def _cell(stats: dict[int, WorkerStats], span: Span, worker_id: int, bucket: int) -> WorkerCell | None:
    index = bucket - span.first_bucket
    worker = stats.get(worker_id)
    if worker is None or not 0 <= index < span.window.buckets:
        return None
    return worker.cells[index]


def _count_where(**condition) -> Sum:
    # SUM(CASE ...) rather than COUNT(...) FILTER: the same SQL on SQLite and PostgreSQL.
    return Sum(Case(When(then=Value(1), **condition), default=Value(0)))
