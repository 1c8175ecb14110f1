"""The request path: pick a worker, call it, fail over, extract the answer."""

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inference import upstream
from inference.balancer import SmoothWeightedRoundRobin
from inference.exceptions import (
    ExtractionFailed,
    ModelNotFound,
    NoRoutableWorker,
    UpstreamFailed,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from inference.extract import PathMismatch
from inference.routing import RoutingTable, routing_table
from mmm.api_errors import ApiError

if TYPE_CHECKING:
    from registry.models import Worker

logger = logging.getLogger("mmm.completion")

# Round-robin positions of this process, shared by its requests.
default_balancer = SmoothWeightedRoundRobin()


class RetryableWorkerError(Exception):
    """This worker failed in a way another worker of the same model may not: try the next."""

    def __init__(self, error: ApiError):
        super().__init__(str(error.detail))
        self.error = error


@dataclass(frozen=True)
class Completion:
    result: Any
    worker: "Worker"
    attempts: int
    upstream_seconds: float


def worker_call(
    *,
    worker: "Worker",
    prompt: str,
    temperature: float | None = None,
    timeout: float | None = None,
    messages: list[dict] | None = None,
    max_tokens: int | None = None,
) -> tuple[Any, float]:
    """Send one prompt to one worker and return (extracted answer, upstream seconds).

    Raises RetryableWorkerError for failures another worker may not share (connection
    failure, timeout, 5xx, 429) and an ApiError for those it would (4xx, a response the
    extract path does not match).
    """
    request = worker.render_request(prompt=prompt, temperature=temperature, messages=messages, max_tokens=max_tokens)
    where = f"worker {worker.id} ({upstream.redact_url(request.url)})"
    try:
        response = upstream.send(request, timeout=timeout or worker.effective_timeout)
    except upstream.UpstreamTimedOut as exc:
        raise RetryableWorkerError(UpstreamTimeout(f"{where}: {exc}")) from None
    except upstream.UpstreamTooLarge as exc:
        raise UpstreamFailed(f"{where}: {exc}") from None
    except upstream.UpstreamError as exc:
        raise RetryableWorkerError(UpstreamUnreachable(f"{where}: {exc}")) from None

    # Upstreams echo what they were sent in their errors, API keys included ("invalid key sk-...").
    snippet = response.snippet(secrets=upstream.secret_header_values(worker.headers or {}))
    if response.status == 429 or response.status >= 500:
        error = UpstreamFailed(f"{where} answered HTTP {response.status}: {snippet}", upstream_status=response.status)
        raise RetryableWorkerError(error)
    if not 200 <= response.status < 300:
        raise UpstreamRejected(
            f"{where} refused the request with HTTP {response.status}: {snippet}", upstream_status=response.status
        )

    is_json, document = response.json_or_text()
    if not worker.extract_steps:
        return document, response.seconds
    if not is_json:
        raise ExtractionFailed(
            f"{where} answered with a body that is not JSON, so response_extract "
            f"{worker.response_extract!r} cannot apply: {snippet}"
        )
    try:
        return worker.extract_answer(document), response.seconds
    except PathMismatch as exc:
        raise ExtractionFailed(f"{where}: {exc}", path=exc.path, failed_at=exc.at) from None


def completion_create(
    *,
    model_name: str,
    prompt: str,
    temperature: float | None = None,
    table: RoutingTable = routing_table,
    balancer: SmoothWeightedRoundRobin = default_balancer,
) -> Completion:
    """Answer ``prompt`` with a worker of ``model_name``, trying each routable worker at most once."""
    workers = table.workers_for(model_name)
    if not workers:
        raise ModelNotFound(model_name)
    candidates = [worker for worker in workers if worker.is_routable]
    if not candidates:
        raise NoRoutableWorker(model_name)

    attempts = 0
    last_error: ApiError | None = None
    while candidates:
        worker = balancer.pick(model_name, candidates)
        candidates.remove(worker)
        attempts += 1
        try:
            result, seconds = worker_call(worker=worker, prompt=prompt, temperature=temperature)
        except RetryableWorkerError as exc:
            last_error = exc.error
            logger.warning("model=%s attempt=%d failed, %s: %s", model_name, attempts,
                           "trying another worker" if candidates else "no worker left", exc)
            continue
        return Completion(result=result, worker=worker, attempts=attempts, upstream_seconds=seconds)

    msg = str(last_error.detail)
    if attempts > 1:
        msg = f"all {attempts} workers of model {model_name!r} failed; last: {msg}"
    raise type(last_error)(msg, **{**last_error.extra, "attempts": attempts})
