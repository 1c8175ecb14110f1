"""Errors of the request path. Each has an HTTP status and a stable machine ``code``;
``mmm.api_errors`` turns them into the project's error body."""

from rest_framework import status

from mmm.api_errors import ApiError


class ModelNotFound(ApiError):
    status_code = status.HTTP_404_NOT_FOUND
    default_code = "model_not_found"

    def __init__(self, model_name: str):
        super().__init__(f"no worker is registered for model {model_name!r}", model_name=model_name)


class NoRoutableWorker(ApiError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "no_routable_worker"

    def __init__(self, model_name: str):
        super().__init__(
            f"model {model_name!r} has workers, but none is enabled, weighted above 0 and alive "
            "(heartbeat not expired)",
            model_name=model_name,
        )


class ModelCannotServe(ApiError):
    """The model exists but has no worker of the kind this request needs (e.g. /v1/embeddings
    on a model with only template workers): a fallback model may have one."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "model_not_supported"


class UpstreamFailed(ApiError):
    """The upstream was reached but failed: a 5xx or 429 on every worker, or a broken response."""

    status_code = status.HTTP_502_BAD_GATEWAY
    default_code = "upstream_error"


class UpstreamRateLimited(ApiError):
    """Every worker tried answered 429: the client is told to back off for the shortest
    Retry-After they gave, as the upstream would have told it."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "upstream_rate_limited"

    def __init__(self, msg: str, *, retry_after: float, **extra):
        super().__init__(msg, **extra)
        self.wait = retry_after


class UpstreamUnreachable(ApiError):
    status_code = status.HTTP_502_BAD_GATEWAY
    default_code = "upstream_unreachable"


class UpstreamRejected(ApiError):
    """The upstream answered 4xx (not 429): the request itself was refused, so no retry."""

    status_code = status.HTTP_502_BAD_GATEWAY
    default_code = "upstream_rejected"


class UpstreamTimeout(ApiError):
    status_code = status.HTTP_504_GATEWAY_TIMEOUT
    default_code = "upstream_timeout"


class ExtractionFailed(ApiError):
    status_code = status.HTTP_502_BAD_GATEWAY
    default_code = "extract_failed"


class WorkersAtCapacity(ApiError):
    """Every worker of the model is at its max_inflight: answer at once rather than queue."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "workers_at_capacity"

    def __init__(self, model_name: str, *, retry_after: int = 1):
        super().__init__(
            f"every worker of model {model_name!r} is at its max_inflight; retry after {retry_after} s",
            model_name=model_name,
        )
        self.wait = retry_after


class DeadlineExceeded(ApiError):
    status_code = status.HTTP_504_GATEWAY_TIMEOUT
    default_code = "deadline_exceeded"


class RetryableWorkerError(Exception):
    """This worker failed in a way another worker of the same model may not: try the next.

    Raised by a protocol (inference.protocols) and caught by the router, which never sees
    how the worker was called.
    """

    def __init__(self, error: ApiError, *, cool_down_seconds: float | None = None):
        super().__init__(str(error.detail))
        self.error = error
        # Set when the upstream said "too many requests": rest the worker, do not hold it against it.
        self.cool_down_seconds = cool_down_seconds
