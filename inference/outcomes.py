"""How one attempt on a worker ended: the one vocabulary of the request path, the routing state
and the request log, and the record of a request's attempts that the router hands back."""

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from registry.models import Worker


class Outcome(str, Enum):
    OK = "ok"  # the worker answered (a stream: it ran to its end)
    FAILED = "failed"  # unreachable, timed out or 5xx before anything reached the client
    REJECTED = "rejected"  # the worker refused the request (4xx): the request's fault, not the worker's
    INTERRUPTED = "interrupted"  # a stream broke, stalled or ended early after the client had events
    CLIENT_GONE = "client_gone"  # the client left mid-stream; the upstream connection was closed
    # No verdict on the worker: it said "too many requests" (it rests instead), the retry
    # budget was spent before the attempt went out, or the request was cancelled.
    NEUTRAL = "neutral"

    @property
    def counts_against_worker(self) -> bool:
        """Whether the routing state holds this against the worker (toward ejection)."""
        return self in (Outcome.FAILED, Outcome.INTERRUPTED)

    @property
    def verdict(self) -> str:
        """What the routing state records: "ok", "failed" (toward ejection) or "neutral" (nothing)."""
        if self is Outcome.OK:
            return "ok"
        return "failed" if self.counts_against_worker else "neutral"


@dataclass(frozen=True)
class AttemptRecord:
    """What the router did for one request: the last worker it tried (the one that answered,
    if one did), how many attempts it made, how the last ended, and how long the upstream took.

    The router returns it with an answer and puts it on the error it raises (``ApiError.attempt``);
    the request log reads only this.
    """

    worker: "Worker | None"
    attempts: int
    outcome: Outcome
    model_name: str  # the model that answered or was tried last: the one asked for, or a fallback
    upstream_seconds: float | None = None


class Recorded:
    """For results that carry an ``AttemptRecord`` as ``record``: who answered, and how."""

    record: AttemptRecord

    @property
    def worker(self) -> "Worker":
        return self.record.worker

    @property
    def attempts(self) -> int:
        return self.record.attempts

    @property
    def model_name(self) -> str:
        """The model that answered: the one asked for, or a fallback."""
        return self.record.model_name
