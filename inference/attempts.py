"""How one attempt on a worker ended, as the /v1 endpoints see it, and what that says about
the worker (the verdict the routing state records: ``inference.routing_state.Outcome``)."""

from inference.routing_state import Outcome as Verdict


class Outcome:
    OK = "ok"  # the worker answered (a stream: it ran to [DONE])
    FAILED = "failed"  # unreachable, timed out, 5xx or 429 before anything reached the client
    REJECTED = "rejected"  # the worker refused the request (4xx): the request's fault, not the worker's
    INTERRUPTED = "interrupted"  # a stream broke, stalled or ended early after the client had events
    CLIENT_GONE = "client_gone"  # the client left mid-stream; the upstream connection was closed


VERDICTS = {
    Outcome.OK: Verdict.OK,
    Outcome.FAILED: Verdict.FAILED,
    Outcome.INTERRUPTED: Verdict.FAILED,  # a stream that breaks counts against its worker
    Outcome.REJECTED: Verdict.NEUTRAL,
    Outcome.CLIENT_GONE: Verdict.NEUTRAL,
}
