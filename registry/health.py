"""Active health checks: probe workers, and record what the probes found.

A failure is data on the worker (state, last error, counters), shown to the operator; the
routing table leaves unhealthy workers out. Recording is a conditional UPDATE on the state
that was read, so two probers, or a prober and an operator, never overwrite each other.
"""

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import F
from django.dispatch import Signal
from django.utils import timezone

from inference import upstream
from inference.exceptions import RetryableWorkerError
from inference.protocols import protocol_for
from inference.routing_state import routing_state
from mmm.api_errors import ApiError
from registry.models import Worker

# How much a new latency sample moves the worker's recent-latency average.
LATENCY_SMOOTHING = 0.3
# Every round of the conditional update lets at least one concurrent writer through, so this
# bounds how many probers and operators may write one worker's health at the same moment.
_RECORD_ATTEMPTS = 20

logger = logging.getLogger("mmm.health")

# Sent with ``result=`` once a probe's result is stored on its worker; the console keeps the
# probe history from it (the registry does not write the console's tables itself).
probe_recorded = Signal()


@dataclass(frozen=True)
class ProbeResult:
    worker_id: int
    ok: bool
    latency_ms: float
    error: str
    checked_at: datetime


@dataclass(frozen=True)
class HealthChange:
    worker_id: int
    old_state: str
    new_state: str


def worker_probe(*, worker: Worker, timeout: float | None = None, prompt: str | None = None) -> ProbeResult:
    """Check one worker: a GET of its health_url, or else a real request with a short prompt."""
    timeout = min(timeout or settings.MMM_PROBE_TIMEOUT, worker.effective_timeout)
    started = time.monotonic()
    error = ""
    try:
        if worker.health_url:
            request = upstream.UpstreamRequest(method="GET", url=worker.health_url, headers=dict(worker.headers or {}))
            response = upstream.send(request, timeout=timeout)
            if not 200 <= response.status < 300:
                error = f"health URL answered HTTP {response.status}"
        else:
            # The same call as a seed request, through the worker's protocol (not the router:
            # a probe is of this one worker, whatever the routing state says of it).
            protocol_for(worker).complete(
                worker=worker, prompt=prompt or settings.MMM_PROBE_PROMPT, temperature=None, timeout=timeout
            )
    except RetryableWorkerError as exc:
        error = str(exc)
    except ApiError as exc:
        error = str(exc.detail)
    except upstream.UpstreamError as exc:
        error = f"health URL: {exc}"
    except Exception as exc:  # one broken worker must not end the pass for all the others
        logger.exception("probe of worker %s failed unexpectedly", worker.pk)
        error = f"probe failed: {type(exc).__name__}"
    return ProbeResult(
        worker_id=worker.pk,
        ok=not error,
        latency_ms=(time.monotonic() - started) * 1000,
        error=error,
        checked_at=timezone.now(),
    )


def _read_worker(worker_id: int) -> Worker | None:
    return Worker.objects.filter(pk=worker_id).first()


def worker_record_probe(
    *, result: ProbeResult, read_worker: Callable[[int], Worker | None] = _read_worker
) -> HealthChange | None:
    """Store a probe's result on its worker; return the state change, if there was one.

    Returns None when the state stayed the same or the worker is gone. A passing probe also
    readmits a worker that live traffic ejected: the prober has just seen it answer.
    """
    if result.ok:
        routing_state().readmit(worker_id=result.worker_id)
    for _ in range(_RECORD_ATTEMPTS):
        current = read_worker(result.worker_id)
        if current is None:
            return None  # taken offline while it was being probed
        state, failures, successes = current.health_after_probe(
            ok=result.ok,
            failures_to_unhealthy=settings.MMM_PROBE_FAILURES_TO_UNHEALTHY,
            successes_to_healthy=settings.MMM_PROBE_SUCCESSES_TO_HEALTHY,
        )
        changes = {
            "health_state": state,
            "consecutive_failures": failures,
            "consecutive_successes": successes,
            "last_probe_at": result.checked_at,
        }
        if state != current.health_state:
            changes["health_changed_at"] = result.checked_at
        if result.ok:
            changes["latency_ms"] = (
                result.latency_ms
                if current.latency_ms is None
                else F("latency_ms") * (1 - LATENCY_SMOOTHING) + result.latency_ms * LATENCY_SMOOTHING
            )
        else:
            changes["last_error"] = result.error[:2000]
            changes["last_error_at"] = result.checked_at
        # Applies only if nobody recorded anything since this process read the row.
        applied = Worker.objects.filter(
            pk=current.pk,
            health_state=current.health_state,
            consecutive_failures=current.consecutive_failures,
            consecutive_successes=current.consecutive_successes,
        ).update(**changes)
        if applied:
            probe_recorded.send(sender=Worker, result=result)  # the dashboard's health timeline
            if state == current.health_state:
                return None
            return HealthChange(worker_id=current.pk, old_state=current.health_state, new_state=state)
    logger.warning(
        "gave up recording a probe of worker %s: its health changed under it %d times",
        result.worker_id,
        _RECORD_ATTEMPTS,
    )
    return None


def workers_probe(
    *, workers: Iterable[Worker], concurrency: int | None = None
) -> Iterator[tuple[ProbeResult, HealthChange | None]]:
    """Probe ``workers`` in parallel (bounded) and record each result as it comes in.

    Probes run in threads; the database writes happen in the calling thread, so the pool
    never opens database connections of its own.
    """
    workers = list(workers)
    if not workers:
        return
    with ThreadPoolExecutor(max_workers=min(concurrency or settings.MMM_PROBE_CONCURRENCY, len(workers))) as pool:
        futures = [pool.submit(worker_probe, worker=worker) for worker in workers]
        for future in as_completed(futures):
            result = future.result()
            try:
                change = worker_record_probe(result=result)
            except Exception:  # one row that cannot be written must not end the pass
                logger.exception("could not record the probe of worker %s", result.worker_id)
                change = None
            yield result, change
