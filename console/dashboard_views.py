"""The dashboard: an admin page, every chart drawn on the server."""

from datetime import timedelta

from django.contrib import admin
from django.shortcuts import render
from django.utils import timezone

from console import charts
from console.dashboard import WINDOWS, Span, model_stats, unregistered_grouped, worker_stats
from console.job_stats import job_stats
from inference.routing_state import routing_state
from registry.models import Worker
from registry.worker_health import worker_health


def dashboard(request):
    window = WINDOWS.get(request.GET.get("window", ""), WINDOWS["hour"])
    span = Span.ending_at(window, timezone.now())
    starts = [span.start_of(index) for index in range(window.buckets)]
    registered = set(Worker.objects.values_list("model_name", flat=True).distinct())
    models, unregistered = unregistered_grouped(model_stats(span=span), registered=registered)
    series = {
        "requests": [],
        "errors": [],
        "p50": [],
        "p95": [],
    }
    for index, stats in enumerate(models):
        color = charts.color_for(index)
        series["requests"].append(charts.Series(stats.model_name, color, stats.requests_per_minute()))
        series["errors"].append(
            charts.Series(stats.model_name, color, [_percent(rate) for rate in stats.error_rates()])
        )
        series["p50"].append(charts.Series(stats.model_name, color, stats.latency_percentiles(0.5)))
        series["p95"].append(charts.Series(stats.model_name, color, stats.latency_percentiles(0.95)))
    model_charts = [
        (
            "Requests per minute",
            charts.line_chart(
                title="Requests per minute", series=series["requests"], starts=starts, value_format=_number
            ),
        ),
        (
            "Error rate (5xx)",
            charts.line_chart(
                title="Error rate", series=series["errors"], starts=starts, value_format=_percent_label, minimum_top=1
            ),
        ),
        ("p50 latency", charts.line_chart(title="p50 latency", series=series["p50"], starts=starts, value_format=_ms)),
        ("p95 latency", charts.line_chart(title="p95 latency", series=series["p95"], starts=starts, value_format=_ms)),
    ]
    all_worker_stats = worker_stats(span=span)
    state = routing_state()
    traffic, now = state.snapshot([stats.worker.pk for stats in all_worker_stats]), state.clock()
    workers = [
        {
            "stats": stats,
            "health": worker_health(stats.worker, traffic.get(stats.worker.pk), now),
            "timeline": charts.timeline(
                states=[cell.state for cell in stats.cells], starts=starts, label=f"health of worker {stats.worker.pk}"
            ),
        }
        for stats in all_worker_stats
    ]
    job_models = job_stats(starts=starts, bucket=timedelta(minutes=window.bucket_minutes), now=timezone.now())
    job_series: dict[str, list] = {"queued": [], "running": [], "completed": [], "failed": []}
    for index, stats in enumerate(job_models):
        color = charts.color_for(index)
        for name, values in job_series.items():
            values.append(charts.Series(stats.model_name, color, getattr(stats, name)))
    job_charts = [
        (caption, charts.line_chart(title=caption, series=job_series[name], starts=starts, value_format=_number))
        for name, caption in (
            ("queued", "Jobs queued in the gateway"),
            ("running", "Jobs running on workers"),
            ("completed", f"Jobs completed per {window.bucket_minutes} min"),
            ("failed", f"Jobs failed per {window.bucket_minutes} min"),
        )
    ]
    context = {
        **admin.site.each_context(request),
        "title": f"Dashboard — {window.label}",
        "window": window,
        "windows": WINDOWS.values(),
        "models": [
            {
                "stats": stats,
                "color": charts.color_for(index),
                "p50": stats.overall.percentile(0.5),
                "p95": stats.overall.percentile(0.95),
            }
            for index, stats in enumerate(models)
        ],
        "unregistered": unregistered,
        "model_charts": model_charts,
        "legend": charts.legend(series["requests"]),
        "workers": workers,
        "job_models": [{"stats": stats, "color": charts.color_for(index)} for index, stats in enumerate(job_models)],
        "job_charts": job_charts if job_models else [],
        "state_colors": charts.STATE_COLORS,
        "first_start": starts[0],
        "bucket_minutes": window.bucket_minutes,
    }
    return render(request, "console/dashboard.html", context)


def _percent(rate: float | None) -> float | None:
    return None if rate is None else rate * 100


def _number(value: float) -> str:
    return f"{value:g}" if value < 1000 else f"{value / 1000:g}k"


def _percent_label(value: float) -> str:
    return f"{value:g}%"


def _ms(value: float) -> str:
    return f"{value:.0f} ms" if value < 1000 else f"{value / 1000:.1f} s"
