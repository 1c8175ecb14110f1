"""The seed endpoint's service: answer one prompt with a worker of a model, whatever its kind.

The router (``inference.router``) picks the worker, retries and falls back; the worker's
protocol (``inference.protocols``) calls it and extracts the answer.
"""

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inference.outcomes import AttemptRecord, Recorded
from inference.prefixes import prompt_hints
from inference.protocols import protocol_for
from inference.protocols.base import Completed
from inference.router import Lease, routed_call
from inference.routing import RoutingTable, routing_table
from inference.routing_state import RoutingState

if TYPE_CHECKING:
    from registry.models import Worker


@dataclass(frozen=True)
class Completion(Recorded):
    result: Any
    record: AttemptRecord
    upstream_seconds: float
    usage: dict | None = None


def completion_create(
    *,
    model_name: str,
    prompt: str,
    temperature: float | None = None,
    table: RoutingTable = routing_table,
    state: RoutingState | None = None,
    rng: random.Random | None = None,
) -> Completion:
    """Answer ``prompt`` with a worker of ``model_name``, or of its fallback models in turn."""

    def call(worker: "Worker", lease: Lease) -> Completed:
        return protocol_for(worker).complete(
            worker=worker, prompt=prompt, temperature=temperature, timeout=lease.timeout
        )

    routed = routed_call(
        model_name=model_name, call=call, table=table, state=state, rng=rng, hints=prompt_hints(prompt=prompt)
    )
    completed: Completed = routed.value
    return Completion(
        result=completed.result,
        record=routed.record,
        upstream_seconds=completed.upstream_seconds,
        usage=completed.usage,
    )
