"""Trying a model's workers one after another: the seam between the /v1 endpoints and balancing.

The /v1 endpoints choose workers through ``worker_candidates`` and bracket every call to a
worker with ``attempt_started`` and ``attempt_finished``, exactly once each, whatever happens;
for a stream, ``attempt_finished`` runs when the stream has ended (completed, cut off, or the
client gone), after the upstream connection is closed. Shared in-flight counters, outlier
ejection and failure reporting plug in here and nowhere else in the /v1 code.
"""

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from inference.balancer import SmoothWeightedRoundRobin
from inference.exceptions import ModelNotFound, NoRoutableWorker
from inference.routing import RoutingTable, routing_table
from inference.services import default_balancer

if TYPE_CHECKING:
    from registry.models import Worker

logger = logging.getLogger("mmm.attempts")


class Outcome:
    OK = "ok"  # the worker answered (a stream: it ran to [DONE])
    FAILED = "failed"  # unreachable, timed out, 5xx or 429 before anything reached the client
    REJECTED = "rejected"  # the worker refused the request (4xx): the request's fault, not the worker's
    INTERRUPTED = "interrupted"  # a stream broke, stalled or ended early after the client had events
    CLIENT_GONE = "client_gone"  # the client left mid-stream; the upstream connection was closed


def worker_candidates(
    *,
    model_name: str,
    accept: Callable[["Worker"], bool] = lambda worker: True,
    refuse: Callable[[str], Exception] | None = None,
    table: RoutingTable = routing_table,
    balancer: SmoothWeightedRoundRobin = default_balancer,
) -> Iterator["Worker"]:
    """The routable workers of ``model_name`` that ``accept`` takes, in the balancer's order,
    each at most once. Raises ModelNotFound, ``refuse(model_name)`` when workers exist but
    ``accept`` takes none, or NoRoutableWorker."""
    workers = table.workers_for(model_name)
    if not workers:
        raise ModelNotFound(model_name)
    accepted = [worker for worker in workers if accept(worker)]
    if not accepted and refuse is not None:
        raise refuse(model_name)
    candidates = [worker for worker in accepted if worker.is_routable]
    if not candidates:
        raise NoRoutableWorker(model_name)
    while candidates:
        worker = balancer.pick(model_name, candidates)
        candidates.remove(worker)
        yield worker


def attempt_started(worker: "Worker") -> None:
    """A call to ``worker`` begins. (Where shared in-flight counters are acquired.)"""


def attempt_finished(worker: "Worker", *, outcome: str, error: str = "") -> None:
    """The call to ``worker`` is over: ``outcome`` is one of Outcome. (Where in-flight counters
    are released and failures reported to outlier ejection.)"""
    if outcome in (Outcome.FAILED, Outcome.INTERRUPTED):
        logger.warning("model=%s worker=%s %s: %s", worker.model_name, worker.pk, outcome, error)
