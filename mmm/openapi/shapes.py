"""Bodies that only the OpenAPI document needs: answers the views build as dicts, and errors."""

from rest_framework import serializers

from registry.serializers import PolicyOutput, WorkerOutput
from webhooks.serializers import WebhookEndpointOutput

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


# --- The registry: model ownership ----------------------------------------------------------


class ModelOwnership(serializers.Serializer):
    model_name = serializers.CharField()
    owner = serializers.CharField(allow_null=True, help_text="the owning key's prefix; null: admins only")
    shared_with = serializers.ListField(child=serializers.CharField(), help_text="key prefixes that may add workers")


class ModelOwnerAnswer(Success):
    data = ModelOwnership()


# --- Other APIs, translated (inference/ingress/) --------------------------------------------
# The request bodies say what the views check, no more: schemathesis holds the gateway to
# refusing what a body here calls invalid. Nested items are described in prose.


def _nullable_number():
    return serializers.FloatField(required=False, allow_null=True, min_value=0)


class AnthropicErrorDetail(serializers.Serializer):
    type = serializers.CharField(help_text="e.g. invalid_request_error, authentication_error, not_found_error")
    message = serializers.CharField()


class AnthropicErrorAnswer(serializers.Serializer):
    """The Messages API's error body, Anthropic's shape."""

    type = serializers.CharField(help_text="always error")
    error = AnthropicErrorDetail()


class AnthropicInputMessage(serializers.Serializer):
    role = serializers.ChoiceField(choices=["user", "assistant"])
    content = serializers.JSONField(help_text="a string, or a list of text, image, tool_use or tool_result blocks")


class MessagesInput(serializers.Serializer):
    """An Anthropic Messages request. Text, image and tool_use/tool_result blocks are translated;
    other fields are ignored."""

    model = serializers.CharField(min_length=1)
    max_tokens = serializers.IntegerField(min_value=1)
    messages = AnthropicInputMessage(many=True, allow_empty=False)
    system = serializers.JSONField(required=False, allow_null=True, help_text="a string, or a list of text blocks")
    temperature = _nullable_number()
    top_p = _nullable_number()
    stop_sequences = serializers.ListField(child=serializers.CharField(), required=False, allow_null=True)
    metadata = serializers.DictField(required=False, allow_null=True, help_text="user_id, a string, is passed on")
    tools = serializers.ListField(
        child=serializers.DictField(), required=False, allow_null=True, help_text="client tools: name, input_schema"
    )
    stream = serializers.BooleanField(required=False, allow_null=True)


class AnthropicMessage(serializers.Serializer):
    id = serializers.CharField()
    type = serializers.CharField(help_text="always message")
    role = serializers.CharField(help_text="always assistant")
    model = serializers.CharField()
    content = serializers.ListField(child=serializers.DictField(), help_text="text and tool_use blocks")
    stop_reason = serializers.CharField(allow_null=True)
    stop_sequence = serializers.CharField(allow_null=True)
    usage = serializers.DictField(help_text="input_tokens, output_tokens")


class ResponsesInput(serializers.Serializer):
    """An OpenAI Responses request. Message, function_call and function_call_output input items
    are translated; other fields are ignored."""

    model = serializers.CharField(min_length=1)
    input = serializers.JSONField(help_text="a string, or a list of input items")
    instructions = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    previous_response_id = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, help_text="continue a stored response's conversation"
    )
    store = serializers.BooleanField(required=False, allow_null=True, help_text="default true: GET it back later")
    stream = serializers.BooleanField(required=False, allow_null=True)
    temperature = _nullable_number()
    top_p = _nullable_number()
    max_output_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    text = serializers.DictField(required=False, allow_null=True, help_text="format: text, json_object or json_schema")
    tools = serializers.ListField(
        child=serializers.DictField(), required=False, allow_null=True, help_text="function tools: name, parameters"
    )
    user = serializers.CharField(required=False, allow_null=True, allow_blank=True)


class ResponseObject(serializers.Serializer):
    """A Response; the request's own settings are echoed as OpenAI does."""

    id = serializers.CharField()
    object = serializers.CharField(help_text="always response")
    created_at = serializers.IntegerField()
    status = serializers.CharField(help_text="completed or incomplete")
    model = serializers.CharField()
    output = serializers.ListField(child=serializers.DictField(), help_text="message and function_call items")
    usage = serializers.DictField(allow_null=True)
    error = serializers.DictField(allow_null=True)
    incomplete_details = serializers.DictField(allow_null=True)


class ResponseDeleted(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField()
    deleted = serializers.BooleanField()


# --- Usage (usage/views.py) -------------------------------------------------------------------


class UsageRow(serializers.Serializer):
    """One group's sums; the group's own fields (day, hour, key, team, model) come first."""

    day = serializers.DateTimeField(required=False, help_text="with group_by day: the UTC day")
    hour = serializers.DateTimeField(required=False, help_text="with group_by hour")
    key = serializers.CharField(required=False, help_text="with group_by key: the key's public prefix")
    team = serializers.CharField(required=False, allow_null=True, help_text="with group_by team")
    model = serializers.CharField(required=False, help_text="with group_by model")
    requests = serializers.IntegerField()
    input_tokens = serializers.IntegerField(help_text="cached input tokens included")
    output_tokens = serializers.IntegerField()
    cached_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    images = serializers.IntegerField()
    video_seconds = serializers.CharField()
    cost_usd = serializers.CharField(help_text="a decimal string, to the nano-dollar")
    estimated_requests = serializers.IntegerField(help_text="rows whose tokens the gateway estimated")


class AdminUsageAnswer(serializers.Serializer):
    success = serializers.BooleanField()
    group_by = serializers.ListField(child=serializers.CharField())
    data = UsageRow(many=True)


class BudgetState(serializers.Serializer):
    id = serializers.IntegerField()
    owner = serializers.ChoiceField(choices=["key", "team"])
    unit = serializers.ChoiceField(choices=["tokens", "usd"])
    period = serializers.ChoiceField(choices=["day", "month", "rolling"])
    window_seconds = serializers.IntegerField(allow_null=True)
    model = serializers.CharField(allow_null=True)
    limit = serializers.JSONField(help_text="tokens (an integer) or USD (a decimal string)")
    spent = serializers.JSONField(help_text="in the current period")
    held = serializers.JSONField(help_text="held by this key's and its team's requests in flight")
    left = serializers.JSONField()


class OwnUsageAnswer(serializers.Serializer):
    object = serializers.CharField(help_text='"usage"')
    group_by = serializers.ListField(child=serializers.CharField())
    data = UsageRow(many=True)
    budgets = BudgetState(many=True)


# --- Jobs (/v1/videos, /v1/images/jobs) -------------------------------------------------------


class JobError(serializers.Serializer):
    code = serializers.CharField(help_text="upstream_rejected, generation_failed, worker_lost, no_worker, ...")
    message = serializers.CharField()


class JobObject(serializers.Serializer):
    """OpenAI's video object; an image job has the same fields with object "image.job" and no
    seconds or remixed_from_video_id."""

    id = serializers.CharField(help_text="the gateway's own id: video_... or imgjob_...")
    object = serializers.ChoiceField(choices=["video", "image.job"])
    model = serializers.CharField()
    status = serializers.ChoiceField(choices=["queued", "in_progress", "completed", "failed"])
    progress = serializers.IntegerField(help_text="0 to 100, where the worker reports it")
    created_at = serializers.IntegerField()
    completed_at = serializers.IntegerField(allow_null=True)
    expires_at = serializers.IntegerField(allow_null=True, help_text="when the job and its result are pruned")
    prompt = serializers.CharField()
    size = serializers.CharField(allow_null=True)
    seconds = serializers.CharField(allow_null=True, required=False)
    remixed_from_video_id = serializers.CharField(allow_null=True, required=False)
    error = JobError(allow_null=True)
    queue_position = serializers.IntegerField(
        allow_null=True, help_text="while queued in the gateway: 1 is the next of its model to be submitted"
    )


class JobList(serializers.Serializer):
    object = serializers.CharField()
    data = JobObject(many=True)
    first_id = serializers.CharField(allow_null=True)
    last_id = serializers.CharField(allow_null=True)
    has_more = serializers.BooleanField()


class JobDeleted(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.ChoiceField(choices=["video.deleted", "image.job.deleted"])
    deleted = serializers.BooleanField()


# --- Webhooks -------------------------------------------------------------------------------


class WebhookEndpointWithSecret(WebhookEndpointOutput):
    secret = serializers.CharField(
        help_text="The Standard Webhooks signing secret (whsec_...), shown only in this answer."
    )

    class Meta(WebhookEndpointOutput.Meta):
        fields = (*WebhookEndpointOutput.Meta.fields, "secret")


class WebhookEndpointCreated(serializers.Serializer):
    success = serializers.BooleanField(help_text="always true")
    msg = serializers.CharField()
    data = WebhookEndpointWithSecret()


class WebhookEndpointAnswer(serializers.Serializer):
    success = serializers.BooleanField(help_text="always true")
    data = WebhookEndpointOutput()


class WebhookEndpointListAnswer(serializers.Serializer):
    success = serializers.BooleanField(help_text="always true")
    data = WebhookEndpointOutput(many=True)
