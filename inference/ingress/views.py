"""POST /v1/messages, POST /v1/responses, GET and DELETE /v1/responses/{id}, GET /v1/models/{id}: thin views
over the ingress translations (the modules beside this one) and the request path."""

from collections.abc import Callable, Iterator

from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from console.completion_log import completion_logged
from inference import openai_api, templating
from inference.exceptions import ModelNotFound
from inference.ingress import anthropic_messages, responses
from inference.ingress.chat import EVENT_STREAM, JSON, Answer, answer_document, chat_answer, error_message
from inference.ingress.chat_stream import ChatEvents, TranslatedStream, named_sse, replay_completion
from inference.ingress.checks import a_bool, a_dict, optional_string
from inference.openai_views import OpenAIView
from inference.prefixes import SESSION_META_KEY
from mmm.api_errors import api_exception_handler
from mmm.api_view import GatewayAPIView
from registry.selectors import routable_models
from response_store.services import conversation_before, owner_of, response_delete, response_store, stored_response


def anthropic_exception_handler(exc: Exception, context: dict):
    """The project's exception handler, its body reshaped as Anthropic's error."""
    response = api_exception_handler(exc, context)
    response.data = anthropic_messages.error_body(status=response.status_code, message=response.data["msg"])
    return response


class MessagesView(GatewayAPIView):
    """The Anthropic Messages API; the key may come as ``x-api-key`` (what Anthropic's SDK
    sends), and ``anthropic-version`` is accepted whatever it says."""

    def get_exception_handler(self):
        return anthropic_exception_handler

    def post(self, request):
        chat = anthropic_messages.chat_request(request.data)
        answer = _answered(request, chat)
        events = anthropic_messages.MessageEvents(model=chat["model"])
        return _translated(
            answer,
            events,
            stream=bool(chat.get("stream")),
            whole=events.message,
            error=lambda status, document: anthropic_messages.error_body(
                status=status, message=error_message(document, status)
            ),
        )


class ResponsesView(OpenAIView):
    def post(self, request):
        body = a_dict(request.data, "body")
        owner = owner_of(request.auth)
        previous = conversation_before(previous_response_id=optional_string(body, "previous_response_id"), owner=owner)
        chat, new_messages = responses.chat_request(body, previous=previous)
        store = True if body.get("store") is None else a_bool(body["store"], "store")  # as OpenAI's default

        def keep(response: dict) -> None:
            conversation = [*previous, *new_messages, events.assistant_message()]
            response_store(response=response, conversation=conversation, owner=owner)

        events = responses.ResponseEvents(
            echoed=responses.echoed_fields(body, store=store), on_complete=keep if store else None
        )
        answer = _answered(request, chat)
        return _translated(
            answer,
            events,
            stream=bool(chat.get("stream")),
            whole=lambda: events.response,
            error=lambda status, document: document,
        )  # already in the OpenAI shape


class ResponseView(OpenAIView):
    def get(self, request, response_id: str):
        found = stored_response(response_id=response_id, owner=owner_of(request.auth))
        return HttpResponse(openai_api.json_bytes(found.response), content_type=JSON)

    def delete(self, request, response_id: str):
        response_delete(response_id=response_id, owner=owner_of(request.auth))
        deleted = {"id": response_id, "object": "response", "deleted": True}
        return HttpResponse(openai_api.json_bytes(deleted), content_type=JSON)


class ModelView(OpenAIView):
    def get(self, request, model_id: str):
        caller = request.auth
        for row in routable_models():
            if row["model_name"] == model_id and (caller is None or caller.may_use_model(model_id)):
                listed = openai_api.models_list([(model_id, int(row["created_at"].timestamp()), row["owner"])])
                return HttpResponse(openai_api.json_bytes(listed["data"][0]), content_type=JSON)
        raise ModelNotFound(model_id)  # also for a model this key may not use, as the list hides it


def _answered(request, chat: dict) -> Answer:
    prompt = templating.chat_values(chat["messages"])[templating.USER_PROMPT]
    with completion_logged(request, model_name=chat["model"], prompt=prompt, stream=bool(chat.get("stream"))) as entry:
        return entry.answered(chat_answer(chat=chat, session_id=request.META.get(SESSION_META_KEY)))


def _translated(
    answer: Answer,
    events: ChatEvents,
    *,
    stream: bool,
    whole: Callable[[], dict],
    error: Callable[[int, dict], dict],
) -> HttpResponseBase:
    """The client's response from the request path's answer: an error in the API's shape, the
    whole translated body, or the translated stream."""
    if answer.stream is None:
        document = answer_document(answer)
        if answer.status >= 400 or "error" in document:
            return HttpResponse(
                openai_api.json_bytes(error(answer.status, document)),
                status=answer.status if answer.status >= 400 else 502,
                content_type=JSON,
            )
        replayed = replay_completion(document, events)
        if not stream:
            return HttpResponse(openai_api.json_bytes(whole()), content_type=JSON)
        # A server that ignored "stream": its whole answer, told as the stream the client asked for.
        return _event_stream(iter([b"".join(map(named_sse, replayed))]))
    return _event_stream(TranslatedStream(answer.stream, events, named_sse))


def _event_stream(chunks: Iterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type=EVENT_STREAM)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # a proxy in front passes each event on as it comes
    return response
