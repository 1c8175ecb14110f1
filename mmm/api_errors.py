"""The one place API errors are shaped: ``{"success": false, "msg": ..., "code": ...}``.

Seed clients test ``success``; people read ``msg``; programs switch on ``code``. Validation
errors add ``errors`` with the per-field details. Nothing escapes as HTML or a bare 500.
"""

import logging
import math

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as ModelValidationError
from django.db import DatabaseError
from django.http import Http404, JsonResponse
from django.views import csrf, defaults
from rest_framework import exceptions, status
from rest_framework.response import Response

logger = logging.getLogger("mmm.api")

INTERNAL_ERROR_MSG = "internal error; the gateway's log has the details"


# The SDKs pick their exception class by status (400 BadRequestError, 401 AuthenticationError,
# 403 PermissionDeniedError, 404 NotFoundError, 429 RateLimitError, >= 500 InternalServerError);
# ``type`` says the same in words, with the names OpenAI's own API uses.
_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}


def openai_error_type(status: int) -> str:
    if status >= 500:
        return "api_error"
    return _ERROR_TYPES.get(status, "invalid_request_error")


def error_body(*, msg: str, code: str, **extra) -> dict:
    return {"success": False, "msg": msg, "code": code, **extra}


class ApiError(exceptions.APIException):
    """Base of the project's own errors: ``extra`` holds machine-readable details for the body."""

    # Seconds the client should wait before trying again (sent as Retry-After), when known.
    wait: float | None = None
    # The router's record of the attempts made before this error (an inference.outcomes
    # AttemptRecord), for the request log; None when no worker was tried.
    attempt = None

    def __init__(self, msg: str, **extra):
        super().__init__(detail=msg, code=self.default_code)
        self.extra = extra


class RegistryUnavailable(ApiError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "registry_unavailable"

    def __init__(self):
        super().__init__("the worker registry's database is unavailable; try again shortly")


class RequestTooLarge(ApiError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"

    def __init__(self):
        super().__init__(
            f"the request body is larger than MMM_MAX_REQUEST_BYTES ({settings.MMM_MAX_REQUEST_BYTES} bytes)"
        )


def api_exception_handler(exc: Exception, context: dict) -> Response:
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DatabaseError):
        logger.error("database error: %s", exc)
        exc = RegistryUnavailable()
    elif isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge()
    elif isinstance(exc, SuspiciousOperation):
        exc = exceptions.ParseError(str(exc))
    elif isinstance(exc, ModelValidationError):
        # The model's own validation (shared with the admin), raised from a service.
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )

    if isinstance(exc, exceptions.ValidationError):
        errors = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        body = error_body(msg=_summarize(errors), code="invalid", errors=errors)
        return Response(body, status=status.HTTP_400_BAD_REQUEST)

    if isinstance(exc, exceptions.APIException):
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else exc.default_code
        body = error_body(msg=str(exc.detail), code=code, **getattr(exc, "extra", {}))
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(max(1, math.ceil(exc.wait)))
        return Response(body, status=exc.status_code, headers=headers)

    view = context.get("view")
    logger.exception("unhandled error in %s", type(view).__name__ if view else "API view")
    body = error_body(msg=INTERNAL_ERROR_MSG, code="internal_error")
    return Response(body, status=status.HTTP_500_INTERNAL_SERVER_ERROR)


def _summarize(errors, prefix: str = "") -> str:
    """One line a person can act on: the first problem, named by where it is."""
    if isinstance(errors, dict):
        for key, value in errors.items():
            where = key if key != "non_field_errors" else ""
            return _summarize(value, f"{prefix}.{where}" if prefix and where else (where or prefix))
    if isinstance(errors, list) and errors:
        return _summarize(errors[0], prefix)
    text = str(errors)
    return f"{prefix}: {text}" if prefix else text


def json_not_found(request, exception=None):
    """handler404 for URLs outside any view: JSON, in the API's error shape (HTML in the admin)."""
    if request.path.startswith("/admin/"):
        return defaults.page_not_found(request, exception)
    return _json_error(request, msg=f"no such endpoint: {request.path}", code="not_found", status=404)


def _json_error(request, *, msg: str, code: str, status: int) -> JsonResponse:
    """An error answered outside DRF, in the shape of the API the path belongs to."""
    if request.path.startswith("/v1/"):  # the OpenAI-compatible API's own error shape
        error = {"message": msg, "type": openai_error_type(status), "param": None, "code": code}
        return JsonResponse({"error": error}, status=status)
    return JsonResponse(error_body(msg=msg, code=code), status=status)


def csrf_failure(request, reason: str = ""):
    """CSRF_FAILURE_VIEW: the admin's forms get Django's page; API clients get JSON.

    API clients authenticate with keys, which need no CSRF token (DRF's views are exempt); a
    failure here means a browser session posting to an endpoint outside DRF without its token.
    """
    if request.path.startswith("/admin/"):
        return csrf.csrf_failure(request, reason)
    return _json_error(request, msg=f"CSRF check failed: {reason}", code="csrf_failed", status=403)


def json_bad_request(request, exception=None):
    """handler400: e.g. a Host header not in ALLOWED_HOSTS, caught before any view runs."""
    if request.path.startswith("/admin/"):
        return defaults.bad_request(request, exception)
    return JsonResponse(
        error_body(msg="bad request: the Host header or the request is not acceptable here", code="bad_request"),
        status=400,
    )


def json_permission_denied(request, exception=None):
    if request.path.startswith("/admin/"):
        return defaults.permission_denied(request, exception)
    return JsonResponse(error_body(msg="permission denied", code="permission_denied"), status=403)


def json_server_error(request):
    """handler500: a view outside DRF failed; the traceback is in the log, not in the answer."""
    return JsonResponse(error_body(msg=INTERNAL_ERROR_MSG, code="internal_error"), status=500)
