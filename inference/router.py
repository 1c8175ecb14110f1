"""The router: pick a worker of a model by its routing policy, run one attempt on it, retry on
other workers and fall back to other models, all within the policy's deadline.

docs/routing.md describes the semantics; the shared state they rest on is
``inference.routing_state``, the choice between workers ``inference.strategies``. The router
knows no worker kind: an attempt is a callable the services hand it (``inference.protocols``
says how each kind is called), and what it learns is only whether the attempt answered, failed
in a way another worker may not (``RetryableWorkerError``) or failed for good (``ApiError``).
"""

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from inference.exceptions import (
    DeadlineExceeded,
    ModelCannotServe,
    ModelNotFound,
    NoRoutableWorker,
    RetryableWorkerError,
    UpstreamFailed,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnreachable,
    WorkersAtCapacity,
)
from inference.outcomes import AttemptRecord, Outcome, Recorded
from inference.prefixes import NO_HINTS, RoutingHints
from inference.routing import RoutingTable, routing_table
from inference.routing_state import RoutingState, routing_state
from inference.strategies import STRATEGIES, pick_least_loaded
from inference.traffic import Acquired, EjectionPolicy, Traffic
from mmm import tracing
from mmm.api_errors import ApiError
from mmm.process import random_hex

if TYPE_CHECKING:
    from registry.models import RoutingPolicy, Worker

logger = logging.getLogger("mmm.completion")

# A request's in-flight token outlives its deadline by this much before it stops counting, so
# only a process that died mid-request leaves a token to expire on its own.
_TOKEN_GRACE_SECONDS = 30.0
# Errors after which the next model in the fallback list is tried: this model could not
# answer, but another may. A refused request or an unreadable answer would fail there too.
_FALL_BACK_ON = (
    ModelNotFound,
    NoRoutableWorker,
    ModelCannotServe,
    WorkersAtCapacity,
    UpstreamFailed,
    UpstreamRateLimited,
    UpstreamUnreachable,
    UpstreamTimeout,
)
# Failures that say only that a model could not take the request, not what went wrong on a try.
_NOTHING_TRIED = (ModelNotFound, NoRoutableWorker, ModelCannotServe)


@dataclass(frozen=True)
class Routed(Recorded):
    value: Any  # what the call returned
    record: AttemptRecord


class Lease:
    """One attempt's hold on a worker: its in-flight slot, and the verdict it reports.

    The request path settles it when the call returns or raises. A call that hands the
    worker's answer on to be read later (a stream) calls ``keep()`` and settles it itself when
    the stream ends, however it ends.
    """

    def __init__(
        self,
        *,
        worker: "Worker",
        token: str,
        timeout: float,
        state: RoutingState,
        model_worker_ids: list[int],
        retry_of: str | None,
    ):
        self.worker = worker
        self.timeout = timeout
        self._token = token
        self._state = state
        self._model_worker_ids = model_worker_ids
        self._retry_of = retry_of  # the model whose retry budget this attempt took a retry from
        self._started = time.monotonic()
        self._latency_ms: float | None = None
        self.kept = False
        self.settled = False

    def keep(self, *, for_seconds: float) -> None:
        """Settle later, when what the worker answers has been read (a stream, for at most
        ``for_seconds``): until then the worker's in-flight slot stays taken."""
        self.kept = True
        hold_until = self._state.clock() + for_seconds + _TOKEN_GRACE_SECONDS
        self._state.extend(
            worker_id=self.worker.id, token=self._token, hold_until=hold_until, model_name=self.worker.model_name
        )

    def answer_began(self) -> None:
        """The worker's answer has begun (a stream's first event): that, not the length of the
        stream, is the latency the balancer compares workers by."""
        if self._latency_ms is None:
            self._latency_ms = (time.monotonic() - self._started) * 1000

    def settle(self, outcome: Outcome, reason: str = "") -> None:
        if self.settled:
            return
        self.settled = True
        worker = self.worker
        if self._retry_of:
            self._state.budget_release_retry(model_name=self._retry_of, token=self._token)
        finished = self._state.finish(
            worker_id=worker.id,
            token=self._token,
            outcome=outcome,
            latency_ms=self._latency_ms if self._latency_ms is not None else (time.monotonic() - self._started) * 1000,
            reason=reason,
            model_worker_ids=self._model_worker_ids,
            policy=EjectionPolicy.from_settings(),
            model_name=worker.model_name,
        )
        if finished.ejected:
            logger.warning(
                "model=%s worker=%s ejected after repeated failures: %s", worker.model_name, worker.id, reason
            )
        elif finished.ejection_refused:
            logger.warning(
                "model=%s worker=%s keeps failing, but as many of the model's workers as "
                "MMM_EJECT_MAX_PERCENT allows are already ejected",
                worker.model_name,
                worker.id,
            )


Call = Callable[["Worker", Lease], Any]


def routed_call(
    *,
    model_name: str,
    call: Call,
    accept: Callable[["Worker"], bool] | None = None,
    refuse: Callable[[str], ApiError] | None = None,
    table: RoutingTable = routing_table,
    state: RoutingState | None = None,
    rng: random.Random | None = None,
    hints: RoutingHints = NO_HINTS,
) -> Routed:
    """Run ``call`` on a worker of ``model_name`` chosen by its routing policy, retrying on other
    workers and then on the policy's fallback models, all within the policy's deadline.

    ``call(worker, lease)`` raises RetryableWorkerError for a failure another worker may not
    share, any other ApiError for one it would. ``accept`` narrows the workers that can serve
    this kind of request; ``refuse(model_name)`` is raised when a model has workers but none
    that ``accept`` takes. ``hints`` (the prompt's prefix, a session key) are for the strategies
    that use them.
    """
    state = state or routing_state()
    policy = table.policy_for(model_name)
    deadline = time.monotonic() + policy.effective_deadline
    chain = [model_name, *policy.fallbacks]
    failures: list[tuple[str, ApiError]] = []
    for position, name in enumerate(chain):
        try:
            return _route_on_model(
                model_name=name,
                call=call,
                accept=accept,
                refuse=refuse,
                deadline=deadline,
                table=table,
                state=state,
                rng=rng or random,
                hints=hints,
            )
        except DeadlineExceeded as exc:
            failures.append((name, exc))
            break  # no time left for another model
        except _FALL_BACK_ON as exc:
            failures.append((name, exc))
            if position + 1 < len(chain):
                logger.warning(
                    "model=%s failed (%s); falling back to model %s", name, exc.default_code, chain[position + 1]
                )
    if len(failures) == 1:
        # (Taken out of the list first: this frame, in the error's traceback, would hold it.)
        raise failures.pop()[1]
    # The client gets the status of what went wrong on a real try (a 502 from the model asked
    # for says more than a 404 for a mistyped fallback), and the message of every model.
    errors = [error for _, error in failures]
    tried = [error for error in errors if not isinstance(error, (*_NOTHING_TRIED, DeadlineExceeded))]
    out_of_time = [error for error in errors if isinstance(error, DeadlineExceeded)]
    chosen = (tried or out_of_time or errors)[0]
    msg = "; ".join(f"model {name!r}: {error.detail}" for name, error in failures)
    waits = [error.wait for error in tried if isinstance(error, UpstreamRateLimited)]
    wait = min(waits) if waits and len(waits) == len(tried) else None
    raise _with_message(chosen, msg, wait=wait, tried_models=[name for name, _ in failures])


def _with_message(error: ApiError, msg: str, *, wait: float | None = None, **extra) -> ApiError:
    """The same kind of error (status and code), saying what happened on every model tried."""
    combined = ApiError.__new__(type(error))
    ApiError.__init__(combined, msg, **{**error.extra, **extra})
    combined.wait = wait if wait is not None else error.wait
    combined.attempt = error.attempt
    return combined


def _route_on_model(
    *,
    model_name: str,
    call: Call,
    accept: Callable[["Worker"], bool] | None,
    refuse: Callable[[str], ApiError] | None,
    deadline: float,
    table: RoutingTable,
    state: RoutingState,
    rng: random.Random,
    hints: RoutingHints,
) -> Routed:
    workers = table.workers_for(model_name)
    if not workers:
        raise ModelNotFound(model_name)
    if accept is not None:
        workers = [worker for worker in workers if accept(worker)]
        if not workers and refuse is not None:
            raise refuse(model_name)
    now = timezone.now()
    dispatchable = [worker for worker in workers if worker.is_dispatchable(now)]
    if not dispatchable:
        raise NoRoutableWorker(model_name)
    # Routable (registry.models: dispatchable and not unhealthy) is what gets traffic normally;
    # the others of the dispatchable are tried only in panic mode.
    routable_ids = {worker.id for worker in dispatchable if worker.is_routable(now)}
    policy = table.policy_for(model_name)
    model_worker_ids = [worker.id for worker in dispatchable]
    # The retry budget counts requests: this one counts with its first look at the traffic (one
    # round trip for both), however many looks and attempts follow.
    counted = False

    attempts = 0
    tried: set[int] = set()
    lost_races = 0
    last_error: ApiError | None = None
    # The error of each failed attempt that may be retried, and the rest each 429 asked for.
    failures: list[ApiError] = []
    last_tried: Worker | None = None
    while attempts < policy.effective_max_attempts:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            error = DeadlineExceeded(
                f"model {model_name!r}: the request's deadline passed after {attempts} attempt(s)"
                + (f"; last: {last_error.detail}" if last_error else ""),
                attempts=attempts,
            )
            error.attempt = AttemptRecord(
                worker=last_tried, attempts=attempts, outcome=Outcome.FAILED, model_name=model_name
            )
            raise error
        pool = [worker for worker in dispatchable if worker.id not in tried]
        if not pool:
            break
        traffic = state.snapshot([worker.id for worker in pool], model_name=model_name, record_request=not counted)
        counted = True
        try:
            worker, panic = _choose(
                pool=pool,
                routable_ids=routable_ids,
                traffic=traffic,
                now=state.clock(),
                policy=policy,
                state=state,
                rng=rng,
                hints=hints,
            )
        except WorkersAtCapacity:
            if last_error is None:
                raise
            break
        token = random_hex()
        hold_until = state.clock() + remaining + _TOKEN_GRACE_SECONDS
        acquired = state.acquire(
            worker_id=worker.id,
            token=token,
            hold_until=hold_until,
            max_inflight=worker.max_inflight,
            panic=panic,
            model_name=worker.model_name,
        )
        if acquired is not Acquired.YES:
            # Another request took its last slot or its trial, or ejected it, since the snapshot:
            # look again (panic mode may now apply), but not forever.
            lost_races += 1
            if lost_races > len(dispatchable):
                tried.add(worker.id)
            continue
        is_retry = attempts > 0
        if is_retry and not state.budget_take_retry(model_name=model_name, token=token, hold_until=hold_until):
            state.finish(
                worker_id=worker.id,
                token=token,
                outcome=Outcome.NEUTRAL,
                latency_ms=None,
                reason="",
                model_worker_ids=model_worker_ids,
                policy=EjectionPolicy.from_settings(),
                model_name=worker.model_name,
            )
            logger.warning("model=%s retry budget spent; not retrying after: %s", model_name, last_error.detail)
            break
        lease = Lease(
            worker=worker,
            token=token,
            timeout=min(policy.per_try_timeout or worker.effective_timeout, remaining),
            state=state,
            model_worker_ids=model_worker_ids,
            retry_of=model_name if is_retry else None,
        )

        attempts += 1
        tried.add(worker.id)
        last_tried = worker
        outcome, reason = Outcome.NEUTRAL, ""
        try:
            value = tracing.upstream_attempt(call, worker, lease, model_name=model_name, attempt=attempts)
            outcome = Outcome.OK
        except ApiError as exc:
            exc.attempt = AttemptRecord(
                worker=worker, attempts=attempts, outcome=Outcome.REJECTED, model_name=model_name
            )
            raise
        except RetryableWorkerError as exc:
            last_error = exc.error
            failures.append(exc.error)
            if exc.cool_down_seconds is not None:
                state.cool_down(worker_id=worker.id, seconds=exc.cool_down_seconds, model_name=worker.model_name)
            else:
                outcome, reason = Outcome.FAILED, str(exc)
            logger.warning("model=%s worker=%s attempt=%d failed: %s", model_name, worker.id, attempts, exc)
            continue
        finally:
            # Settled however the call ended (a client gone mid-call included), unless it kept
            # the lease for a stream that settles it at its end.
            if not lease.kept or outcome is not Outcome.OK:
                lease.settle(outcome, reason)
        return Routed(
            value=value,
            record=AttemptRecord(
                worker=worker,
                attempts=attempts,
                outcome=Outcome.OK,
                model_name=model_name,
                upstream_seconds=getattr(value, "upstream_seconds", None),
            ),
        )

    if last_error is None:
        raise WorkersAtCapacity(model_name)
    # Only when every worker tried said "too many requests" is that what the client hears (with
    # the shortest rest they asked for); a real failure among them says more.
    rate_limited = [error for error in failures if isinstance(error, UpstreamRateLimited)]
    if len(rate_limited) < len(failures):
        last_error = next(error for error in reversed(failures) if not isinstance(error, UpstreamRateLimited))
    msg = str(last_error.detail)
    if attempts > 1:
        msg = f"all {attempts} attempts on model {model_name!r} failed; last: {msg}"
    wait = min(error.wait for error in rate_limited) if len(rate_limited) == len(failures) else None
    error = _with_message(last_error, msg, wait=wait, attempts=attempts)
    error.attempt = AttemptRecord(worker=last_tried, attempts=attempts, outcome=Outcome.FAILED, model_name=model_name)
    raise error


def _choose(
    *,
    pool: list,
    routable_ids: set[int],
    traffic: dict[int, Traffic],
    now: float,
    policy: "RoutingPolicy",
    state: RoutingState,
    rng: random.Random,
    hints: RoutingHints = NO_HINTS,
) -> tuple["Worker", bool]:
    """(worker, panic): the worker for the next attempt, and whether it was chosen in panic mode."""
    available = [
        worker
        for worker in pool
        if worker.id in routable_ids
        and not traffic[worker.id].is_ejected(now)
        and not traffic[worker.id].is_cooling(now)
        and not traffic[worker.id].trial_running(now)
    ]
    panic = not available
    if panic:
        # As Envoy does: when every worker looks bad, the signals are more likely wrong (or the
        # outage total) than worth failing every request without trying.
        logger.warning(
            "model=%s panic mode: all %d dispatchable workers are unhealthy, ejected or cooling down; trying them anyway",
            policy.model_name,
            len(pool),
        )
        available = pool
    candidates = [
        worker for worker in available if not worker.max_inflight or traffic[worker.id].in_flight < worker.max_inflight
    ]
    if not candidates:
        raise WorkersAtCapacity(policy.model_name)
    if not panic:
        for worker in candidates:
            if traffic[worker.id].is_half_open(now):
                return worker, False  # its one trial request after an ejection
    pick = STRATEGIES[policy.strategy]
    choice = {
        "candidates": candidates,
        "traffic": traffic,
        "rng": rng,
        "state": state,
        "group": policy.model_name,
        "hints": hints,
    }
    try:
        return pick(**choice), panic
    except Exception:
        if pick is pick_least_loaded:
            raise
        # A strategy that reads more (engine signals, prefix tables) must never fail a request
        # that least_loaded would have served; the log says what went wrong.
        logger.exception("model=%s strategy %s failed; choosing least_loaded", policy.model_name, policy.strategy)
        return pick_least_loaded(**choice), panic
