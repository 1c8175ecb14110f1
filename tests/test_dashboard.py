"""The dashboard's numbers, checked against a known set of log rows."""

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from console.dashboard import WINDOWS, Span, model_stats, worker_stats
from console.models import LATENCY_GROWTH, ProbeRecord, RequestLog, epoch_minute, latency_class
from registry.models import Worker

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 1, 12, 30, 20, tzinfo=UTC)
DASHBOARD = "/admin/dashboard/"


def log(
    *, at: datetime, model: str = "alpha", status: int = 200, latency_ms: float = 100.0, worker=None, error=""
) -> RequestLog:
    return RequestLog(
        created_at=at,
        minute=epoch_minute(at),
        model_name=model,
        status=status,
        latency_ms=latency_ms,
        latency_class=latency_class(latency_ms),
        worker=worker,
        error=error,
        error_code="upstream_error" if status >= 500 else "",
    )


def nearest_rank(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]


def test_requests_errors_and_percentiles_per_model_and_minute():
    rng = random.Random(7)
    latencies = [rng.lognormvariate(5, 1) for _ in range(400)]  # a long tail, as LLM calls have
    minute_ago = NOW - timedelta(minutes=1)
    rows = [
        log(at=minute_ago, latency_ms=ms, status=500 if index % 10 == 0 else 200) for index, ms in enumerate(latencies)
    ]
    rows += [log(at=NOW, model="beta", latency_ms=50.0) for _ in range(3)]
    rows += [log(at=NOW - timedelta(minutes=61), latency_ms=1.0)]  # outside the hour
    rows += [log(at=NOW, model="beta", status=404, latency_ms=2.0)]  # the client's error: not a 5xx
    RequestLog.objects.bulk_create(rows)

    stats = {row.model_name: row for row in model_stats(span=Span.ending_at(WINDOWS["hour"], NOW))}

    alpha, beta = stats["alpha"], stats["beta"]
    assert alpha.requests[-2:] == [400, 0] and alpha.total_requests == 400
    assert alpha.errors[-2] == 40 and alpha.error_rate == pytest.approx(0.1)
    assert beta.requests[-1] == 4 and beta.total_errors == 0
    for fraction in (0.5, 0.95):
        exact = nearest_rank(latencies, fraction)
        # One histogram class wide: LATENCY_GROWTH (9 %) either way.
        assert exact / LATENCY_GROWTH <= alpha.latency_percentiles(fraction)[-2] <= exact * LATENCY_GROWTH
        assert exact / LATENCY_GROWTH <= alpha.overall.percentile(fraction) <= exact * LATENCY_GROWTH
    assert alpha.latency_percentiles(0.5)[-1] is None  # no traffic is no latency, not zero


def test_the_day_window_adds_minutes_into_quarter_hours():
    start_of_quarter = NOW.replace(minute=15, second=0)
    RequestLog.objects.bulk_create(
        [log(at=start_of_quarter + timedelta(minutes=offset)) for offset in (0, 5, 14)]
        + [log(at=start_of_quarter - timedelta(seconds=1))]
        + [log(at=NOW - timedelta(hours=23))]
    )

    [alpha] = model_stats(span=Span.ending_at(WINDOWS["day"], NOW))

    assert len(alpha.requests) == 96
    assert alpha.requests[-2:] == [3, 0]  # 12:15-12:29 holds three, 12:30- none yet
    assert alpha.requests[-3] == 1
    assert alpha.total_requests == 5
    assert alpha.requests_per_minute()[-2] == pytest.approx(3 / 15)


def test_worker_timelines_and_last_errors():
    worker = Worker.objects.create(
        model_name="alpha", req_url_template="http://127.0.0.1:1/a", body={"p": "{USER_PROMPT}"}
    )
    quiet = Worker.objects.create(
        model_name="alpha", req_url_template="http://127.0.0.1:1/b", body={"p": "{USER_PROMPT}"}
    )
    three_ago, two_ago, one_ago = (NOW - timedelta(minutes=n) for n in (3, 2, 1))
    ProbeRecord.objects.bulk_create(
        [
            ProbeRecord(worker=worker, checked_at=three_ago, minute=epoch_minute(three_ago), ok=True, latency_ms=5),
            ProbeRecord(
                worker=worker,
                checked_at=two_ago,
                minute=epoch_minute(two_ago),
                ok=False,
                latency_ms=5,
                error="connection refused",
            ),
        ]
    )
    RequestLog.objects.bulk_create(
        [log(at=one_ago, worker=worker), log(at=one_ago, worker=worker, status=502, error="HTTP 500 from upstream")]
    )

    by_worker = {row.worker.pk: row for row in worker_stats(span=Span.ending_at(WINDOWS["hour"], NOW))}

    cells = by_worker[worker.pk].cells
    assert [cell.state for cell in cells[-4:]] == ["up", "down", "flapping", "none"]
    assert (by_worker[worker.pk].requests, by_worker[worker.pk].errors) == (2, 1)
    assert [(line.source, line.text) for line in by_worker[worker.pk].last_errors] == [
        ("request", "HTTP 502 upstream_error: HTTP 500 from upstream"),
        ("probe", "connection refused"),
    ]
    assert {cell.state for cell in by_worker[quiet.pk].cells} == {"none"}


def test_the_page_draws_a_chart_per_measure_for_staff_only(client, admin_client):
    worker = Worker.objects.create(
        model_name="<b>alpha</b>", req_url_template="http://127.0.0.1:1/a", body={"p": "{USER_PROMPT}"}
    )
    now = datetime.now(UTC)
    RequestLog.objects.bulk_create(
        [log(at=now - timedelta(minutes=n % 5), model="<b>alpha</b>", worker=worker) for n in range(10)]
    )

    assert client.get(DASHBOARD).status_code == 302  # to the admin's login
    page = admin_client.get(DASHBOARD).content.decode()
    day = admin_client.get(DASHBOARD, {"window": "day"}).content.decode()

    for caption in ("Requests per minute", "Error rate (5xx)", "p50 latency", "p95 latency"):
        assert caption in page
    assert page.count('<svg class="chart"') == 4
    assert "<polyline" in page or "<circle" in page
    assert '<svg class="timeline"' in page
    assert "&lt;b&gt;alpha&lt;/b&gt;" in page and "<b>alpha</b>" not in page
    assert "Buckets of 15 min" in day


def test_an_empty_log_says_there_is_no_traffic(admin_client):
    assert "No completion requests in the last hour." in admin_client.get(DASHBOARD).content.decode()
