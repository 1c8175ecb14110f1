"""Reading the engines' own load: one pass of ``manage.py scrape_engines``.

Every worker that names an engine has its /metrics read (in parallel, each read bounded by
MMM_ENGINE_SCRAPE_TIMEOUT) and what it says stored in the shared routing state, where the
engine_aware and prefix_aware strategies read it. Several scrapers, on several hosts, may run
at once: each worker is claimed for one interval in the shared state, so one of them reads it
and the engines are not read once per scraper.

A failed read is data, as a failed probe is: the error, its time and the failures in a row stay
on the worker's signals (the workers list and /metrics show them), and the strategies treat the
last good reading as what it is, stale after MMM_ENGINE_SIGNALS_STALE_SECONDS. A read that
cannot connect or times out also counts against the worker in passive health, at most once a
second: the engine serves its API and its metrics on the same port, so it is likely down.
"""

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from django.conf import settings

from inference import upstream
from inference.engine_signals import EngineMetricsUnreadable, EngineSignals, parse_engine_metrics
from inference.outcomes import Outcome
from inference.redaction import mask_secrets, secret_values
from inference.routing_state import RoutingState
from inference.traffic import EjectionPolicy
from registry.models import Worker

logger = logging.getLogger("mmm.engines")

# Connection failures a second apart at most count toward ejection: at 4 reads a second, every
# one counting would eject a worker over one hiccup of its metrics endpoint.
_HEALTH_FEED_SECONDS = 1.0
_PARALLEL_READS = 16


@dataclass(frozen=True)
class ScrapeResult:
    worker_id: int
    ok: bool
    error: str = ""
    signals: EngineSignals | None = None


@dataclass(frozen=True)
class EngineFleet:
    """The workers whose engine is read (those that name one and may get traffic), and the
    dispatchable workers of each of their models (how many may be ejected at once)."""

    workers: tuple[Worker, ...]
    model_worker_ids: dict[str, list[int]]

    @classmethod
    def load(cls, *, model_name: str | None = None) -> "EngineFleet":
        dispatchable = Worker.objects.dispatchable()
        if model_name:
            dispatchable = dispatchable.filter(model_name=model_name)
        # Read every second: only the workers that name an engine are built, and of the others
        # only the ids of their models' workers are read (a fleet of API keys and no engine costs
        # one small query).
        named = tuple(dispatchable.exclude(engine=""))
        models = {worker.model_name for worker in named}
        model_worker_ids: dict[str, list[int]] = {}
        if models:
            for pk, name in dispatchable.filter(model_name__in=models).order_by("pk").values_list("pk", "model_name"):
                model_worker_ids.setdefault(name, []).append(pk)
        return cls(workers=named, model_worker_ids=model_worker_ids)


def engines_scrape(*, fleet: EngineFleet, state: RoutingState, interval: float) -> list[ScrapeResult]:
    """Read the engine of every worker this scraper claims for ``interval``; store what each says."""
    workers = [worker for worker in fleet.workers if state.engine_claim(worker_id=worker.pk, seconds=interval * 0.9)]
    if not workers:
        return []
    ids = [worker.pk for worker in workers]
    # This gateway's share of what the engines will report (read just before them).
    in_flight = {worker_id: seen.in_flight for worker_id, seen in state.snapshot(ids).items()}
    previous = state.engine_read(ids)
    model_workers = fleet.model_worker_ids
    with ThreadPoolExecutor(max_workers=min(_PARALLEL_READS, len(workers))) as pool:
        return list(
            pool.map(
                lambda worker: _scrape_one(
                    worker=worker,
                    state=state,
                    in_flight=in_flight.get(worker.pk, 0),
                    previous=previous.get(worker.pk, EngineSignals()),
                    model_worker_ids=model_workers.get(worker.model_name, [worker.pk]),
                ),
                workers,
            )
        )


def _scrape_one(
    *, worker: Worker, state: RoutingState, in_flight: int, previous: EngineSignals, model_worker_ids: list[int]
) -> ScrapeResult:
    url = worker.effective_metrics_url
    unreachable = False
    try:
        request = upstream.UpstreamRequest(method="GET", url=url, headers=dict(worker.headers or {}))
        response = upstream.send(request, timeout=settings.MMM_ENGINE_SCRAPE_TIMEOUT)
        if response.status != 200:
            raise EngineMetricsUnreadable(f"metrics URL answered HTTP {response.status}")
        reading = parse_engine_metrics(engine=worker.engine, text=response.content.decode("utf-8", "replace"))
    except (upstream.UpstreamUnreachable, upstream.UpstreamTimedOut) as exc:
        error, unreachable = f"metrics URL: {exc}", True
    except (upstream.UpstreamError, EngineMetricsUnreadable) as exc:
        error = f"metrics URL: {exc}" if isinstance(exc, upstream.UpstreamError) else str(exc)
    except Exception as exc:  # one broken engine must not end the pass for the others
        logger.exception("scrape of worker %s failed unexpectedly", worker.pk)
        error = f"scrape failed: {type(exc).__name__}"
    else:
        signals = EngineSignals(
            waiting=reading.waiting,
            running=reading.running,
            kv_cache_usage=reading.kv_cache_usage,
            adapters=reading.adapters,
            cache_tokens=reading.cache_tokens,
            scraped_at=state.clock(),
            in_flight_at_scrape=in_flight,
        )
        state.engine_record(worker_id=worker.pk, signals=signals)
        return ScrapeResult(worker_id=worker.pk, ok=True, signals=signals)
    secrets = [*worker.secret_values(), *secret_values(headers={}, url=worker.metrics_url, body=None)]
    error = mask_secrets(error, secrets=secrets)[:300]
    now = state.clock()
    counted_at = previous.counted_at
    if unreachable and now - counted_at >= _HEALTH_FEED_SECONDS:
        counted_at = now
        state.finish(
            worker_id=worker.pk,
            token=f"scrape-{uuid.uuid4().hex}",  # no slot was taken: only the verdict counts
            outcome=Outcome.FAILED,
            latency_ms=None,
            reason=error,
            model_worker_ids=model_worker_ids,
            policy=EjectionPolicy.from_settings(),
        )
    failed = replace(
        previous,
        error=error,
        failed_at=now,
        consecutive_failures=previous.consecutive_failures + 1,
        counted_at=counted_at,
    )
    state.engine_record(worker_id=worker.pk, signals=failed)
    return ScrapeResult(worker_id=worker.pk, ok=False, error=error, signals=failed)
