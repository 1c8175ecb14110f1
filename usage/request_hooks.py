"""The request path's three touches of usage (console.completion_log calls them): reserve
before the call, meter the answer, settle when the response is over."""

import dataclasses
from dataclasses import dataclass
from typing import Any

from usage.metering import MeteredStream, StreamMeter, Tokens, answer_output_chars, estimate_tokens, reported
from usage.services import Reservation, usage_reserve, usage_settle


@dataclass
class RequestUsage:
    reservation: Reservation
    tokens: Tokens | None = None  # of a whole answer
    meter: StreamMeter | None = None  # of a stream, as it is relayed


def reserve(request: Any, *, model_name: str) -> RequestUsage:
    """Raises usage.exceptions.BudgetExceeded when a budget has no room for the request."""
    caller = getattr(request, "auth", None)
    body = getattr(request, "data", None)
    django_request = getattr(request, "_request", request)
    return RequestUsage(
        reservation=usage_reserve(
            api_key_id=getattr(caller, "api_key_id", None),
            api_key_prefix=getattr(caller, "api_key_prefix", None) or "",
            model_name=model_name,
            body=body if isinstance(body, dict) else {},
            request_id=getattr(django_request, "request_id", ""),
        )
    )


def answered(usage: RequestUsage, completion: Any) -> Any:
    """The completion to hand on: a stream is wrapped so what goes out is counted."""
    stream = getattr(completion, "stream", None)
    if stream is not None and hasattr(stream, "on_end") and dataclasses.is_dataclass(completion):
        usage.meter = StreamMeter()
        return dataclasses.replace(completion, stream=MeteredStream(stream, usage.meter))
    tokens = reported(getattr(completion, "usage", None))
    if tokens is None:
        body = getattr(completion, "body", None)
        if isinstance(body, bytes) and body:
            chars = answer_output_chars(body)
        else:
            result = getattr(completion, "result", None)
            chars = len(result if isinstance(result, str) else str(result or ""))
        tokens = Tokens(input=usage.reservation.input_estimate, output=estimate_tokens(chars), estimated=True)
    usage.tokens = tokens
    return completion


def finished(usage: RequestUsage, *, status: int) -> None:
    """Settle once the client has the response (a stream: once it ended, however it ended)."""
    tokens = usage.tokens
    if usage.meter is not None:
        tokens = usage.meter.tokens(input_estimate=usage.reservation.input_estimate)
    elif status >= 400 and tokens is not None and tokens.estimated:
        tokens = None  # refused, and the upstream reported nothing used: nothing to bill
    usage_settle(reservation=usage.reservation, tokens=tokens, status=status, behind=True)
