"""The OpenAI API's shapes: its error body, chat completions and their stream chunks, the
models list. The /v1 views answer only in these shapes, so the official SDKs work unchanged."""

import json
from collections.abc import Iterable
from typing import Any

from rest_framework.response import Response

from mmm import json_codec
from mmm.api_errors import api_exception_handler, openai_error_type


def error_body(*, message: str, code: str, status: int, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": openai_error_type(status), "param": param, "code": code}}


def openai_exception_handler(exc: Exception, context: dict) -> Response:
    """The project's exception handler (one place decides statuses and messages), with its
    body reshaped into ``{"error": {"message", "type", "param", "code"}}``."""
    response = api_exception_handler(exc, context)
    seed = response.data
    errors = seed.get("errors")
    param = next(iter(errors), None) if isinstance(errors, dict) else getattr(exc, "param", None)
    response.data = error_body(
        message=seed["msg"],
        code=seed["code"],
        status=response.status_code,
        param=None if param == "non_field_errors" else param,
    )
    if "budget" in seed:  # budget_exceeded: which budget, what is left, when it resets
        response.data["error"]["budget"] = seed["budget"]
    return response


def json_bytes(document: Any) -> bytes:
    return json_codec.dumps(document)


def answer_text(result: Any) -> str:
    """A template worker's extracted answer as message content (JSON text if it is not a string)."""
    return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)


def models_list(models: Iterable[tuple[str, int, str]]) -> dict:
    """``models`` as (name, created as a Unix time, owner)."""
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": created, "owned_by": owner or "mmm"}
            for name, created, owner in models
        ],
    }
