"""Prometheus metrics: traffic counted in each process, worker health read from the database.

Under gunicorn several processes serve requests and any one of them may answer a scrape, so
with PROMETHEUS_MULTIPROC_DIR set (mmm/gunicorn.conf.py sets it) every process writes its
counters to files there and a scrape adds them up (prometheus_client's multiprocess mode).
Without it (runserver, tests) the process's own registry is used. Worker health, weight and
the last probe are read from the database at scrape time, so they are the same whichever
process answers and do not depend on that process having served traffic.
"""

import os

from django.conf import settings
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from console.job_metrics import JobStateCollector
from console.metric_values import multiprocess_value_class
from inference.routing import routing_table

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    values.ValueClass = multiprocess_value_class()  # (console.metric_values says how and why)

# Seconds; LLM calls run from tens of milliseconds (cached, tiny models) to minutes.
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, float("inf"))

REQUESTS = Counter(
    "mmm_requests",
    "Completion requests answered, by model, answering worker (id, empty when none answered), HTTP status "
    "and error code (empty on success); requests refused before routing (keys, limits) count too.",
    ["model", "worker", "status", "code"],
)
REQUEST_SECONDS = Histogram(
    "mmm_request_duration_seconds",
    "Time a completion request spent in the gateway, retries included.",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
UPSTREAM_SECONDS = Histogram(
    "mmm_upstream_duration_seconds",
    "Time of the upstream call that answered, by model and worker.",
    ["model", "worker"],
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge(
    "mmm_requests_in_flight",
    "Completion requests being answered right now, by model.",
    ["model"],
    multiprocess_mode="livesum",
)
LOG_DROPPED = Counter(
    "mmm_request_log_dropped",
    "Request log rows dropped because the queue was full (the database was too slow or down).",
)


UNKNOWN_MODEL = "<unknown>"

# Each metric's children by their label values. prometheus_client's labels() checks the names,
# converts every value and takes a lock on each call: a few per completion were 2-3% of its CPU.
# The values are bounded (model_label folds unknown names into one), so the cache is too.
_CHILDREN: dict[tuple, object] = {}


def child(metric, *values: str):
    """``metric.labels(*values)``, made once per set of values (positional, in the metric's order)."""
    key = (metric, values)
    found = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN.setdefault(key, metric.labels(*values))
    return found


def model_label(model_name: str) -> str:
    """The model label of a series: names a client sends but nobody registered share one, so
    random names cannot grow the metrics (and their files under multiprocess mode) without end."""
    return model_name if model_name and routing_table.knows(model_name) else UNKNOWN_MODEL


class InFlight:
    """One completion counted in ``mmm_requests_in_flight`` until ``done()`` (once, however it ends)."""

    def __init__(self, *, model_name: str):
        self._gauge = child(IN_FLIGHT, model_label(model_name))
        self._gauge.inc()
        self._done = False

    def done(self, **_) -> None:
        if not self._done:
            self._done = True
            self._gauge.dec()


def observe_completion(
    *,
    model_name: str,
    worker_id: int | None,
    status: int,
    seconds: float,
    upstream_seconds: float | None,
    code: str = "",
) -> None:
    worker = "" if worker_id is None else str(worker_id)
    model_name = model_label(model_name)
    child(REQUESTS, model_name, worker, str(status), code if status >= 400 else "").inc()
    child(REQUEST_SECONDS, model_name).observe(seconds)
    if upstream_seconds is not None and worker_id is not None:
        child(UPSTREAM_SECONDS, model_name, worker).observe(upstream_seconds)


class WorkerStateCollector(Collector):
    """Gauges of every registered worker, from one query at scrape time."""

    def collect(self):
        from inference.routing_state import routing_state
        from registry.models import HealthState, Worker

        labels = ["worker", "model"]
        healthy = GaugeMetricFamily("mmm_worker_healthy", "1 if the worker's health state is healthy.", labels=labels)
        unhealthy = GaugeMetricFamily(
            "mmm_worker_unhealthy",
            "1 if probes took the worker out of rotation (health state unhealthy).",
            labels=labels,
        )
        routable = GaugeMetricFamily(
            "mmm_worker_routable",
            "1 if the worker gets traffic: enabled, weight above 0, heartbeat not expired, not unhealthy (as /v1/models).",
            labels=labels,
        )
        weight = GaugeMetricFamily("mmm_worker_weight", "The worker's weight (0 drains it).", labels=labels)
        last_probe_ok = GaugeMetricFamily(
            "mmm_worker_last_probe_ok", "1 if the worker's last probe passed, 0 if it failed.", labels=labels
        )
        last_probe_time = GaugeMetricFamily(
            "mmm_worker_last_probe_timestamp_seconds", "When the worker was last probed (Unix time).", labels=labels
        )
        failures = GaugeMetricFamily("mmm_worker_consecutive_probe_failures", "Failed probes in a row.", labels=labels)
        latency = GaugeMetricFamily(
            "mmm_worker_probe_latency_seconds", "Moving average of the worker's probe latency.", labels=labels
        )
        # Live traffic, shared by every process through the routing state: one read for all.
        ejected = GaugeMetricFamily(
            "mmm_worker_ejected",
            "1 while live-traffic failures keep the worker ejected (docs/routing.md).",
            labels=labels,
        )
        in_flight_now = GaugeMetricFamily(
            "mmm_worker_in_flight", "Requests at the worker now, over all gateway processes.", labels=labels
        )
        latency_ewma = GaugeMetricFamily(
            "mmm_worker_latency_ewma_seconds",
            "The peak-EWMA latency the least_loaded strategy balances on.",
            labels=labels,
        )
        # The engines' own load (manage.py scrape_engines), for the workers that name one.
        engine_queue = GaugeMetricFamily(
            "mmm_worker_engine_queue", "Requests waiting in the worker's engine, as last scraped.", labels=labels
        )
        engine_running = GaugeMetricFamily(
            "mmm_worker_engine_running", "Requests running in the worker's engine, as last scraped.", labels=labels
        )
        engine_cache = GaugeMetricFamily(
            "mmm_worker_engine_kv_cache_usage",
            "Fraction of the worker's engine KV cache in use, as last scraped (engines that report it).",
            labels=labels,
        )
        engine_fresh = GaugeMetricFamily(
            "mmm_worker_engine_signals_fresh",
            "1 if the engine's last good scrape is recent enough to route on (MMM_ENGINE_SIGNALS_STALE_SECONDS).",
            labels=labels,
        )
        engine_failures = GaugeMetricFamily(
            "mmm_worker_engine_scrape_failures", "Failed scrapes of the engine's /metrics in a row.", labels=labels
        )
        engine_scraped = GaugeMetricFamily(
            "mmm_worker_engine_last_scrape_timestamp_seconds",
            "When the engine's /metrics was last read successfully (Unix time).",
            labels=labels,
        )
        rows = list(
            Worker.objects.values_list(
                "pk",
                "model_name",
                "health_state",
                "enabled",
                "weight",
                "last_probe_at",
                "consecutive_failures",
                "consecutive_successes",
                "latency_ms",
                "engine",
            )
        )
        routable_ids = set(Worker.objects.routable().values_list("pk", flat=True))  # the one definition
        state_now = routing_state()
        traffic = state_now.snapshot([row[0] for row in rows])
        now = state_now.clock()
        engines = state_now.engine_read([row[0] for row in rows if row[-1]])
        stale_after = settings.MMM_ENGINE_SIGNALS_STALE_SECONDS
        for pk, model_name, state, _enabled, weight_value, probed_at, failed, passed, latency_ms, engine in rows:
            values = [str(pk), model_name]
            healthy.add_metric(values, float(state == HealthState.HEALTHY))
            unhealthy.add_metric(values, float(state == HealthState.UNHEALTHY))
            routable.add_metric(values, float(pk in routable_ids))
            weight.add_metric(values, float(weight_value))
            failures.add_metric(values, float(failed))
            if probed_at is not None:
                last_probe_ok.add_metric(values, float(passed > 0))
                last_probe_time.add_metric(values, probed_at.timestamp())
            if latency_ms is not None:
                latency.add_metric(values, latency_ms / 1000)
            seen = traffic[pk]
            ejected.add_metric(values, float(seen.is_ejected(now)))
            in_flight_now.add_metric(values, float(seen.in_flight))
            if seen.latency_ewma_ms is not None:
                latency_ewma.add_metric(values, seen.latency_ewma_ms / 1000)
            signals = engines.get(pk)
            if engine and signals is not None:
                engine_fresh.add_metric(values, float(signals.is_fresh(now=now, stale_after=stale_after)))
                engine_failures.add_metric(values, float(signals.consecutive_failures))
                if signals.scraped_at:
                    engine_queue.add_metric(values, signals.waiting)
                    engine_running.add_metric(values, signals.running)
                    engine_scraped.add_metric(values, signals.scraped_at)
                    if signals.kv_cache_usage is not None:
                        engine_cache.add_metric(values, signals.kv_cache_usage)
            elif engine:
                engine_fresh.add_metric(values, 0.0)
        yield from (
            healthy,
            unhealthy,
            routable,
            weight,
            last_probe_ok,
            last_probe_time,
            failures,
            latency,
            ejected,
            in_flight_now,
            latency_ewma,
            engine_queue,
            engine_running,
            engine_cache,
            engine_fresh,
            engine_failures,
            engine_scraped,
        )


class _ProcessRegistry(Collector):
    """This process's own metrics, for a scrape outside multiprocess mode."""

    def collect(self):
        return REGISTRY.collect()


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def metrics_text() -> bytes:
    """The exposition of a scrape: every process's traffic plus the database's worker state."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ProcessRegistry())
    registry.register(WorkerStateCollector())
    registry.register(JobStateCollector())
    return generate_latest(registry)
