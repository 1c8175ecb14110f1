"""The OpenAI API's shapes: its error body, chat completions and their stream chunks, the
models list. The /v1 views answer only in these shapes, so the official SDKs work unchanged."""

import json
import time
import uuid
from collections.abc import Iterable
from typing import Any

from rest_framework.response import Response

from inference.streaming import DONE_EVENT, sse_event
from mmm.api_errors import api_exception_handler

# The SDKs pick their exception class by status (400 BadRequestError, 404 NotFoundError, 429
# RateLimitError, >= 500 InternalServerError); ``type`` says the same in words.
_ERROR_TYPES = {400: "invalid_request_error", 404: "invalid_request_error", 413: "invalid_request_error",
                429: "rate_limit_error", 503: "service_unavailable"}


def error_body(*, message: str, code: str, status: int, param: str | None = None) -> dict:
    error_type = _ERROR_TYPES.get(status, "upstream_error" if status in (502, 504) else "api_error")
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def openai_exception_handler(exc: Exception, context: dict) -> Response:
    """The project's exception handler (one place decides statuses and messages), with its
    body reshaped into ``{"error": {"message", "type", "param", "code"}}``."""
    response = api_exception_handler(exc, context)
    seed = response.data
    errors = seed.get("errors")
    param = next(iter(errors), None) if isinstance(errors, dict) else None
    response.data = error_body(
        message=seed["msg"],
        code=seed["code"],
        status=response.status_code,
        param=None if param == "non_field_errors" else param,
    )
    return response


def json_bytes(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def answer_text(result: Any) -> str:
    """A template worker's extracted answer as message content (JSON text if it is not a string)."""
    return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)


def chat_completion(*, model: str, content: str) -> dict:
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop", "logprobs": None}
        ],
    }


def chat_completion_events(*, model: str, content: str) -> list[bytes]:
    """A whole answer as a chat.completion.chunk stream: the role, the content, the finish, [DONE]."""
    base = {"id": completion_id(), "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    deltas = ({"role": "assistant", "content": ""}, {"content": content}, {})
    return [
        *(
            sse_event({**base, "choices": [
                {"index": 0, "delta": delta, "finish_reason": None if delta else "stop", "logprobs": None}
            ]})
            for delta in deltas
        ),
        DONE_EVENT,
    ]


def models_list(models: Iterable[tuple[str, int, str]]) -> dict:
    """``models`` as (name, created as a Unix time, owner)."""
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": created, "owned_by": owner or "mmm"}
            for name, created, owner in models
        ],
    }
