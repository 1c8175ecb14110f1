"""The OpenAI-compatible endpoints under /v1/: thin views over inference.openai_services."""

from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from rest_framework import serializers

from console.completion_log import completion_logged
from inference import openai_api, templating
from inference.openai_services import Answer, chat_completion_answer, openai_passthrough_answer
from inference.prefixes import SESSION_META_KEY
from mmm.api_fields import StrictBooleanField, StrictCharField, StrictIntegerField, StrictNumberField
from mmm.api_view import GatewayAPIView
from mmm.input_serializers import BoundOnceSerializer, validated
from registry.selectors import routable_models

# A client's name for one conversation: prefix_aware keeps its turns on one worker.


class OpenAIView(GatewayAPIView):
    """Errors in the OpenAI shape, which the SDKs turn into their exception classes."""

    def get_exception_handler(self):
        return openai_api.openai_exception_handler


class ModelRequestInput(BoundOnceSerializer):
    # Every other field the client sends goes upstream as it is (openai workers).
    model = StrictCharField(max_length=200)
    stream = StrictBooleanField(required=False, default=False)


class MessageInput(BoundOnceSerializer):
    role = StrictCharField(max_length=64)
    content = serializers.JSONField(required=False, allow_null=True)


class ChatInput(ModelRequestInput):
    messages = MessageInput(many=True, allow_empty=False)
    temperature = StrictNumberField(required=False, allow_null=True, min_value=0)
    max_tokens = StrictIntegerField(required=False, allow_null=True, min_value=1)
    max_completion_tokens = StrictIntegerField(required=False, allow_null=True, min_value=1)


def _respond(answer: Answer) -> HttpResponseBase:
    if answer.stream is None:
        return HttpResponse(answer.body, status=answer.status, content_type=answer.content_type)
    response = StreamingHttpResponse(answer.stream, status=answer.status, content_type=answer.content_type)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # a proxy in front passes each event on as it comes
    return response


class ModelsView(OpenAIView):
    def get(self, request):
        caller = request.auth
        models = [
            (row["model_name"], int(row["created_at"].timestamp()), row["owner"])
            for row in routable_models()
            if caller is None or caller.may_use_model(row["model_name"])  # a key sees only its models
        ]
        return HttpResponse(openai_api.json_bytes(openai_api.models_list(models)), content_type="application/json")


class ChatCompletionsView(OpenAIView):
    def post(self, request):
        data = validated(ChatInput, request.data)
        prompt = templating.chat_values(request.data["messages"])[templating.USER_PROMPT]
        with completion_logged(request, model_name=data["model"], prompt=prompt, stream=data["stream"]) as entry:
            answer = entry.answered(
                chat_completion_answer(
                    model_name=data["model"],
                    body=request.data,
                    # The messages as sent: content parts and tool calls included.
                    messages=request.data["messages"],
                    stream=data["stream"],
                    session_id=request.META.get(SESSION_META_KEY),
                )
            )
        return _respond(answer)


class OpenAIPassthroughView(OpenAIView):
    """An endpoint that only openai workers serve, passed through as it is."""

    endpoint = ""  # the path under the worker's base URL, e.g. "/embeddings"

    def post(self, request):
        data = validated(ModelRequestInput, request.data)
        with completion_logged(request, model_name=data["model"], stream=data["stream"]) as entry:
            answer = entry.answered(
                openai_passthrough_answer(
                    model_name=data["model"],
                    endpoint=self.endpoint,
                    body=request.data,
                    stream=data["stream"],
                    session_id=request.META.get(SESSION_META_KEY),
                )
            )
        return _respond(answer)
