"""Bodies that only the OpenAPI document needs: answers the views build as dicts, and errors."""

from rest_framework import serializers

from registry.serializers import PolicyOutput, WorkerOutput

# --- Errors ---------------------------------------------------------------------------------


class ErrorAnswer(serializers.Serializer):
    """The seed's and the registry's error body (mmm/api_errors.py)."""

    success = serializers.BooleanField(help_text="always false")
    msg = serializers.CharField(help_text="what went wrong, for a person")
    code = serializers.CharField(help_text="stable machine code, e.g. invalid, model_not_found, throttled")
    errors = serializers.JSONField(required=False, help_text="validation errors by field (code invalid)")


class OpenAIErrorDetail(serializers.Serializer):
    message = serializers.CharField()
    type = serializers.CharField()
    param = serializers.CharField(allow_null=True)
    code = serializers.CharField(allow_null=True)


class OpenAIErrorAnswer(serializers.Serializer):
    """The /v1 API's error body, the OpenAI API's shape."""

    error = OpenAIErrorDetail()


# --- The registry ---------------------------------------------------------------------------


class Success(serializers.Serializer):
    success = serializers.BooleanField(help_text="always true")
    msg = serializers.CharField()


class Traffic(serializers.Serializer):
    """What live traffic says about a worker, shared by every gateway process."""

    in_flight = serializers.IntegerField()
    latency_ewma_ms = serializers.FloatField(allow_null=True)
    consecutive_failures = serializers.IntegerField()
    ejected_until = serializers.DateTimeField(allow_null=True)
    ejection_reason = serializers.CharField(allow_blank=True)
    ejections = serializers.IntegerField()
    half_open = serializers.BooleanField()
    cooldown_until = serializers.DateTimeField(allow_null=True)
    recent_requests = serializers.IntegerField()
    recent_success_rate = serializers.FloatField(allow_null=True)


class Worker(WorkerOutput):
    """WorkerOutput with its computed fields typed, for the document only."""

    traffic = Traffic(allow_null=True, help_text="null until the worker has seen traffic")
    body = serializers.JSONField(allow_null=True, help_text="the body template, secrets masked")

    class Meta(WorkerOutput.Meta):
        ref_name = "Worker"


class RegisterAnswer(Success):
    worker = Worker(required=False, help_text="with a preset: what it filled in")


class WorkerListAnswer(serializers.Serializer):
    success = serializers.BooleanField()
    data = Worker(many=True)


class HeartbeatAnswer(Success):
    expires_at = serializers.DateTimeField(allow_null=True, help_text="null for a worker without ttl")


class PolicyListAnswer(serializers.Serializer):
    success = serializers.BooleanField()
    data = PolicyOutput(many=True)


class PolicySetAnswer(Success):
    data = PolicyOutput()


# --- Inference ------------------------------------------------------------------------------


class CompletionAnswer(Success):
    result = serializers.JSONField(help_text="the extracted answer, of any JSON type")
    model = serializers.CharField(required=False, help_text="only when a fallback model answered")


class Model(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField()
    created = serializers.IntegerField()
    owned_by = serializers.CharField()


class ModelList(serializers.Serializer):
    object = serializers.CharField()
    data = Model(many=True)


class ChatMessage(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.JSONField(allow_null=True)


class ChatChoice(serializers.Serializer):
    index = serializers.IntegerField()
    message = ChatMessage()
    finish_reason = serializers.CharField(allow_null=True)


class ChatCompletion(serializers.Serializer):
    """A chat.completion; an openai worker's answer is passed on as it came, with its extras."""

    id = serializers.CharField()
    object = serializers.CharField()
    created = serializers.IntegerField()
    model = serializers.CharField()
    choices = ChatChoice(many=True)
    usage = serializers.JSONField(required=False, allow_null=True)
