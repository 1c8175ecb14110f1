"""The /v1 services: answer a chat or a passthrough request with a worker of a model.

A chat request is the neutral request of ``inference.protocols.base`` (an OpenAI
chat-completions body) whatever the worker speaks: each worker's protocol translates it to its
API and its answer back to a ``chat.completion`` body or a stream of chunks. Other /v1 endpoints
(embeddings, images, legacy completions) are passed through to the kinds that speak OpenAI.

A failed attempt (unreachable, timed out, 5xx, 429, or a stream that broke before its first
event) moves the request to the next worker; once the first byte of a stream has gone to the
client, it does not.
"""

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from inference.exceptions import ModelCannotServe
from inference.outcomes import Outcome
from inference.prefixes import NO_HINTS, RoutingHints, chat_hints, prompt_hints
from inference.protocols import protocol_for
from inference.protocols.base import EVENT_STREAM, JSON, Answer
from inference.router import Lease, routed_call

if TYPE_CHECKING:
    from registry.models import Worker


__all__ = ["EVENT_STREAM", "JSON", "Answer", "chat_completion_answer", "openai_passthrough_answer"]


class NotServedByThisModelsWorkers(ModelCannotServe):
    def __init__(self, model_name: str, endpoint: str):
        super().__init__(
            f"model {model_name!r} has no worker that serves {endpoint}: only openai workers pass it through "
            "(its workers answer /v1/chat/completions)",
            model_name=model_name,
        )


def chat_completion_answer(
    *,
    model_name: str,
    body: dict,
    messages: list[dict],
    stream: bool,
    session_id: str | None = None,
) -> Answer:
    """Answer one /v1/chat/completions request (``body`` is the client's whole request, the
    neutral request every protocol reads; ``messages`` is its ``messages``; ``session_id`` the
    client's X-Session-ID, which prefix_aware keeps on one worker)."""
    chat = body if body.get("messages") is messages else {**body, "messages": messages}
    return _answer_with_failover(
        model_name=model_name,
        attempt=lambda worker, lease: protocol_for(worker).chat(worker=worker, chat=chat, stream=stream, attempt=lease),
        hints=chat_hints(body=chat, session_header=session_id),
    )


def openai_passthrough_answer(
    *, model_name: str, endpoint: str, body: dict, stream: bool = False, session_id: str | None = None
) -> Answer:
    """Answer a request to an endpoint only kinds that speak OpenAI serve (/v1/embeddings, ...)."""
    return _answer_with_failover(
        hints=prompt_hints(prompt=body.get("prompt") or body.get("input") or "", body=body, session_header=session_id),
        model_name=model_name,
        attempt=lambda worker, lease: protocol_for(worker).passthrough(
            worker=worker, endpoint=endpoint, body=body, stream=stream, attempt=lease
        ),
        accept=lambda worker: protocol_for(worker).serves(endpoint),
        refuse=lambda name: NotServedByThisModelsWorkers(name, f"/v1{endpoint}"),
    )


def _answer_with_failover(
    *,
    model_name: str,
    attempt: Callable[["Worker", Lease], Answer],
    accept: Callable[["Worker"], bool] | None = None,
    refuse: Callable[[str], Exception] | None = None,
    hints: RoutingHints = NO_HINTS,
) -> Answer:
    """The routing of the seed endpoint (policy, retries, ejection, fallbacks) for /v1 answers."""

    def call(worker: "Worker", lease: Lease) -> Answer:
        answer = attempt(worker, lease)
        if answer.outcome != Outcome.OK:
            lease.settle(answer.outcome)  # refused by the upstream: the request's fault
        return answer

    routed = routed_call(model_name=model_name, call=call, accept=accept, refuse=refuse, hints=hints)
    # Logged once, by console.middleware's line for the request (answered_by_model on a fallback).
    return dataclasses.replace(routed.value, record=dataclasses.replace(routed.record, outcome=routed.value.outcome))
