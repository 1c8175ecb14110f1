"""The probe history: every probe's result, kept for the dashboard's health timelines."""

from typing import TYPE_CHECKING

from console.models import ProbeRecord, epoch_minute

if TYPE_CHECKING:
    from registry.health import ProbeResult


def probe_history_add(*, result: "ProbeResult") -> ProbeRecord:
    return ProbeRecord.objects.create(
        worker_id=result.worker_id,
        checked_at=result.checked_at,
        minute=epoch_minute(result.checked_at),
        ok=result.ok,
        latency_ms=result.latency_ms,
        error=result.error[:2000],
    )
