"""One health for a worker, from its probes and its live traffic together.

Probes alone say ``unknown`` until the first one runs, and ``healthy`` for a worker that live
traffic has just ejected; traffic alone knows nothing of a worker nobody calls. The admin's
list, its worker page and the dashboard all show this instead, with the reason in words.
"""

from dataclasses import dataclass

from inference.traffic import Traffic
from registry.models import HealthState, Worker

COLORS = {
    "healthy": "#1e8e3e",
    "failing": "#e37400",
    "recovering": "#e37400",
    "ejected": "#d93025",
    "unhealthy": "#d93025",
    "unknown": "#80868b",
}


@dataclass(frozen=True)
class WorkerHealth:
    state: str  # a key of COLORS
    reason: str

    @property
    def color(self) -> str:
        return COLORS[self.state]


def worker_health(worker: Worker, traffic: Traffic | None, now: float) -> WorkerHealth:
    """The first that holds: ejected by traffic, unhealthy by probes, on trial after an
    ejection, failing live requests, healthy by probes or by answered traffic, unknown."""
    traffic = traffic or Traffic()
    if traffic.is_ejected(now):
        why = f": {traffic.ejection_reason}" if traffic.ejection_reason else ""
        return WorkerHealth("ejected", f"ejected for {traffic.ejected_until - now:.0f} s more by live traffic{why}")
    if worker.health_state == HealthState.UNHEALTHY:
        error = f": {worker.last_error}" if worker.last_error else ""
        return WorkerHealth("unhealthy", f"{worker.consecutive_failures} probe(s) failed in a row{error}")
    if traffic.is_half_open(now):
        return WorkerHealth("recovering", "its ejection is over; the next request is a trial")
    if traffic.consecutive_failures:
        return WorkerHealth("failing", f"the last {traffic.consecutive_failures} request(s) to it failed")
    answered = (
        f"{traffic.success_rate:.0%} of {traffic.recent_total} recent requests succeeded"
        if traffic.recent_total
        else ""
    )
    if worker.health_state == HealthState.HEALTHY:
        return WorkerHealth("healthy", "; ".join(filter(None, ["the last probe passed", answered])))
    if traffic.recent_ok:
        return WorkerHealth("healthy", f"answering traffic: {answered}; no probe yet")
    return WorkerHealth("unknown", "no probe and no recent traffic yet")
