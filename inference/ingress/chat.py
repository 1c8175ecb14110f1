"""The ingress APIs' one door into the request path: an OpenAI chat-completions body in, the
request path's Answer out (a chat.completion body, or a stream of chat.completion.chunk events
ending in ``[DONE]``), for any worker kind."""

import json

# The request path's entry point and its answer type: this module is the only one here that
# names them, so a new request path is wired in at one place.
from inference.openai_services import EVENT_STREAM, JSON, Answer, chat_completion_answer

__all__ = ["EVENT_STREAM", "JSON", "Answer", "answer_document", "chat_answer", "error_message"]


def chat_answer(*, chat: dict, session_id: str | None = None) -> Answer:
    """Route ``chat`` (already translated and validated) like a /v1/chat/completions request."""
    return chat_completion_answer(
        model_name=chat["model"],
        body=chat,
        messages=chat["messages"],
        stream=bool(chat.get("stream")),
        session_id=session_id,
    )


def answer_document(answer: Answer) -> dict:
    """A whole answer's JSON body (a chat.completion, or an OpenAI error body)."""
    try:
        document = json.loads(answer.body)
    except ValueError:
        document = None
    if isinstance(document, dict):
        return document
    text = answer.body[:500].decode("utf-8", errors="replace")
    return {"error": {"message": f"the model answered something that is not JSON: {text}", "code": "upstream_error"}}


def error_message(document: dict, status: int) -> str:
    """The message of an OpenAI error body, whatever else it holds."""
    error = document.get("error")
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return f"the model refused the request with HTTP {status}"
