"""Each API view as the document shows it: its body, its answers and its errors.

One ``OpenApiViewExtension`` per view, so the view modules carry no schema decorators. A view
without one here still appears (drf-spectacular finds every DRF view), but without answers:
tests/test_openapi.py fails on that.
"""

from drf_spectacular.extensions import OpenApiViewExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema

from inference.openai_views import ChatInput, ModelRequestInput
from inference.views import CompletionView
from mmm.openapi import shapes
from registry.serializers import (
    ModelOwnerInput,
    PolicyInput,
    PolicyKeyInput,
    WorkerKeyInput,
    WorkerRegisterInput,
)
from webhooks.serializers import WebhookEndpointInput

EVENT_STREAM = "text/event-stream"

# status -> when, for every DRF endpoint. Which apply depends on the endpoint.
_WHEN = {
    400: "invalid input: `errors` names each field (code `invalid`), or the body is not JSON (`parse_error`)",
    401: "no API key, or one that is unknown, revoked or expired",
    403: "the key lacks the scope, may not use the model, or does not own the worker",
    404: "not found: the model, worker or policy named",
    413: "the body is larger than MMM_MAX_REQUEST_BYTES",
    429: "the key's requests per minute are used up, or (inference) a budget of the key or its team has no "
    "room for the request: code `budget_exceeded`, with `budget` saying which, what is left and when it "
    "resets (Retry-After says when to come back)",
    502: "every upstream attempt failed, refused the request or answered something unreadable",
    503: "no worker can take the request now, or the database or Redis does not answer",
    504: "the upstream or the routing policy's deadline timed out",
}
_REGISTRY_ERRORS = (400, 401, 403, 413, 429, 503)
_INFERENCE_ERRORS = (400, 401, 403, 404, 413, 429, 502, 503, 504)


def _errors(statuses, body=shapes.ErrorAnswer) -> dict:
    return {status: OpenApiResponse(body, description=_WHEN[status]) for status in statuses}


def _openai_errors(statuses) -> dict:
    return _errors(statuses, shapes.OpenAIErrorAnswer)


def _anthropic_errors(statuses) -> dict:
    return _errors(statuses, shapes.AnthropicErrorAnswer)


def _described(view, by_method=None, **schema):
    """A subclass of ``view`` whose handlers carry ``schema`` (or, for a view with several
    methods, ``by_method[name]``): the document's copy, never routed."""
    by_method = by_method or {name: schema for name in ("get", "post") if hasattr(view, name)}
    methods = {name: extend_schema(**described)(getattr(view, name)) for name, described in by_method.items()}
    return type(view.__name__, (view,), methods)


def _describe(view_path: str, by_method=None, **schema):
    """An ``OpenApiViewExtension`` for the view at ``view_path``."""

    class Extension(OpenApiViewExtension):
        target_class = view_path

        def view_replacement(self):
            return _described(self.target, by_method, **schema)

    Extension.__name__ = f"Describe{view_path.rsplit('.', 1)[-1]}"
    return Extension


class CompletionInput(CompletionView.InputSerializer):
    """The seed's completion request (the view's own serializer, under a name of its own)."""


REGISTRY = ["registry"]

_describe(
    "registry.views.WorkerRegisterView",
    tags=REGISTRY,
    operation_id="worker_register",
    summary="Register a worker, or update it in place",
    description="Same `model_name` and `req_url_template` again updates that worker; fields left out keep "
    "their values. Needs the `worker` scope. A refused registration writes nothing.",
    request=WorkerRegisterInput,
    responses={200: shapes.RegisterAnswer, **_errors(_REGISTRY_ERRORS)},
)
_describe(
    "registry.views.WorkerListView",
    tags=REGISTRY,
    operation_id="worker_list",
    summary="List the workers, with health and live traffic",
    parameters=[OpenApiParameter("model_name", str, description="only this model's workers")],
    responses={200: shapes.WorkerListAnswer, **_errors(_REGISTRY_ERRORS)},
)
_describe(
    "registry.views.WorkerOfflineView",
    tags=REGISTRY,
    operation_id="worker_offline",
    summary="Remove a worker",
    request=WorkerKeyInput,
    responses={200: shapes.Success, **_errors((*_REGISTRY_ERRORS, 404))},
)
_describe(
    "registry.views.WorkerHeartbeatView",
    tags=REGISTRY,
    operation_id="worker_heartbeat",
    summary="Keep a worker with a ttl registered",
    request=WorkerKeyInput,
    responses={200: shapes.HeartbeatAnswer, **_errors((*_REGISTRY_ERRORS, 404))},
)
_describe(
    "registry.views.PolicyListView",
    tags=REGISTRY,
    operation_id="policy_list",
    summary="List the routing policies",
    responses={200: shapes.PolicyListAnswer, **_errors(_REGISTRY_ERRORS)},
)
_describe(
    "registry.views.PolicySetView",
    tags=REGISTRY,
    operation_id="policy_set",
    summary="Create or change a model's routing policy",
    description="Needs the `admin` scope. Fields left out keep their value.",
    request=PolicyInput,
    responses={200: shapes.PolicySetAnswer, **_errors(_REGISTRY_ERRORS)},
)
_describe(
    "registry.views.PolicyDeleteView",
    tags=REGISTRY,
    operation_id="policy_delete",
    summary="Return a model to the default routing",
    request=PolicyKeyInput,
    responses={200: shapes.Success, **_errors((*_REGISTRY_ERRORS, 404))},
)

_describe(
    "registry.views.ModelOwnerView",
    tags=REGISTRY,
    operation_id="model_owner_set",
    summary="Transfer or share a model name's ownership",
    description="Needs the `admin` scope. `owner` (a key's prefix, or null for admins only) transfers the "
    "name; `share_with` and `unshare` add or remove keys that may also register workers under it.",
    request=ModelOwnerInput,
    responses={200: shapes.ModelOwnerAnswer, **_errors((*_REGISTRY_ERRORS, 404))},
)

_describe(
    "inference.views.CompletionView",
    tags=["seed"],
    operation_id="seed_completion",
    summary="Complete a prompt (the seed's API)",
    description="Routed by the model's policy, failing over to other workers and fallback models.",
    request=CompletionInput,
    responses={200: shapes.CompletionAnswer, **_errors(_INFERENCE_ERRORS)},
)

OPENAI = ["openai"]
_describe(
    "inference.openai_views.ModelsView",
    tags=OPENAI,
    operation_id="openai_models",
    summary="The models this key may use",
    responses={200: shapes.ModelList, **_openai_errors((401, 403, 429, 503))},
)
_describe(
    "inference.openai_views.ChatCompletionsView",
    tags=OPENAI,
    operation_id="openai_chat_completions",
    summary="A chat completion, whole or streamed",
    description="Fields beyond these go to openai workers as sent. An upstream's own 4xx comes back "
    "with its status, in this error shape.",
    request=ChatInput,
    responses={
        (200, "application/json"): shapes.ChatCompletion,
        (200, EVENT_STREAM): OpenApiResponse(OpenApiTypes.STR, description='with `"stream": true`'),
        **_openai_errors(_INFERENCE_ERRORS),
    },
)
_describe(
    "inference.ingress.views.ModelView",
    tags=OPENAI,
    operation_id="openai_model",
    summary="One model this key may use",
    responses={200: shapes.Model, **_openai_errors((401, 403, 404, 429, 503))},
)
_describe(
    "inference.ingress.views.ResponsesView",
    tags=OPENAI,
    operation_id="openai_responses_create",
    summary="A response (the OpenAI Responses API), whole or streamed",
    description="Translated to a chat completion and back. Stored unless `store` is false, for "
    "`previous_response_id` and GET; only the key that made it can read it.",
    request=shapes.ResponsesInput,
    responses={
        (200, "application/json"): shapes.ResponseObject,
        (200, EVENT_STREAM): OpenApiResponse(OpenApiTypes.STR, description='with `"stream": true`: response.* events'),
        **_openai_errors(_INFERENCE_ERRORS),
    },
)
_STORED_ERRORS = (401, 403, 404, 429, 503)
_describe(
    "inference.ingress.views.ResponseView",
    by_method={
        "get": {
            "tags": OPENAI,
            "operation_id": "openai_responses_retrieve",
            "summary": "A stored response",
            "responses": {200: shapes.ResponseObject, **_openai_errors(_STORED_ERRORS)},
        },
        "delete": {
            "tags": OPENAI,
            "operation_id": "openai_responses_delete",
            "summary": "Delete a stored response",
            "responses": {200: shapes.ResponseDeleted, **_openai_errors(_STORED_ERRORS)},
        },
    },
)

ANTHROPIC = ["anthropic"]
_describe(
    "inference.ingress.views.MessagesView",
    tags=ANTHROPIC,
    operation_id="anthropic_messages",
    summary="A message (the Anthropic Messages API), whole or streamed",
    description="Translated to a chat completion and back. The key may come as `x-api-key`, as Anthropic's "
    "SDK sends it; `anthropic-version` is accepted whatever it says. Errors in Anthropic's shape.",
    request=shapes.MessagesInput,
    responses={
        (200, "application/json"): shapes.AnthropicMessage,
        (200, EVENT_STREAM): OpenApiResponse(OpenApiTypes.STR, description='with `"stream": true`: message_* events'),
        **_anthropic_errors(_INFERENCE_ERRORS),
    },
)


class PassthroughDescription(OpenApiViewExtension):
    """/v1/completions, /v1/embeddings and /v1/images/generations: one view class, three paths."""

    target_class = "inference.openai_views.OpenAIPassthroughView"

    def view_replacement(self):
        endpoint = self.target_callback.view_initkwargs.get("endpoint", "")
        name = endpoint.strip("/").replace("/", "_")
        return _described(
            self.target,
            tags=OPENAI,
            operation_id=f"openai_{name}",
            summary=f"{endpoint}, passed to an openai worker as sent",
            request=ModelRequestInput,
            responses={
                (200, "application/json"): OpenApiResponse(
                    OpenApiTypes.OBJECT, description="the worker's answer as it came"
                ),
                (200, EVENT_STREAM): OpenApiResponse(OpenApiTypes.STR, description='with `"stream": true`'),
                **_openai_errors(_INFERENCE_ERRORS),
            },
        )


USAGE = ["usage"]
_USAGE_PARAMETERS = [
    OpenApiParameter("since", OpenApiTypes.DATETIME, description="from this time, inclusive"),
    OpenApiParameter("until", OpenApiTypes.DATETIME, description="until this time, exclusive"),
    OpenApiParameter("model", str, description="only this model"),
    OpenApiParameter("group_by", str, description="comma-separated: day, hour, key, team, model (default day,model)"),
]
_describe(
    "usage.views.AdminUsageView",
    tags=USAGE,
    operation_id="usage_list",
    summary="Usage and cost per key, team and model over time",
    description="Needs the `admin` scope. From the usage ledger, written in batches a second or so behind.",
    parameters=[
        *_USAGE_PARAMETERS,
        OpenApiParameter("key", str, description="only the key with this public prefix"),
        OpenApiParameter("team", str, description="only this team's keys"),
        OpenApiParameter("output", str, enum=["json", "csv"], description="csv: the same rows as a CSV file"),
    ],
    responses={
        (200, "application/json"): shapes.AdminUsageAnswer,
        (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="with output=csv"),
        **_errors((400, 401, 403, 429, 503)),
    },
)
_describe(
    "usage.views.OwnUsageView",
    tags=USAGE,
    operation_id="usage_own",
    summary="This key's own usage, and its and its team's budgets",
    parameters=_USAGE_PARAMETERS,
    responses={200: shapes.OwnUsageAnswer, **_openai_errors((400, 401, 403, 429, 503))},
)
_JOB_ERRORS = (401, 403, 404, 429, 503)


class _JobDescription(OpenApiViewExtension):
    """The jobs views serve /v1/videos and /v1/images/jobs alike (their ``kind``)."""

    def _names(self) -> tuple[str, str]:
        from jobs.models import JobKind

        kind = self.target_callback.view_initkwargs.get("kind", JobKind.VIDEO)
        return ("videos", "a video") if kind == JobKind.VIDEO else ("image_jobs", "an image job")


class JobsDescription(_JobDescription):
    target_class = "jobs.views.JobsView"

    def view_replacement(self):
        from jobs.views import JobInput, ListQuery

        name, what = self._names()
        return _described(
            self.target,
            by_method={
                "post": {
                    "tags": OPENAI,
                    "operation_id": f"openai_{name}_create",
                    "summary": f"Queue {what} (answers at once, status queued)",
                    "description": "JSON, or multipart/form-data as the openai SDK sends it, with an optional "
                    "`input_reference` file. A runner submits it to one of the model's job workers when one "
                    "has a free slot (docs/jobs.md).",
                    "request": {"application/json": JobInput, "multipart/form-data": JobInput},
                    "responses": {200: shapes.JobObject, **_openai_errors((400, 401, 403, 404, 413, 429, 503))},
                },
                "get": {
                    "tags": OPENAI,
                    "operation_id": f"openai_{name}_list",
                    "summary": f"This key's {name.replace('_', ' ')}, newest first, by cursor",
                    "parameters": [ListQuery],
                    "responses": {200: shapes.JobList, **_openai_errors((400, *_JOB_ERRORS))},
                },
            },
        )


class JobDescription(_JobDescription):
    target_class = "jobs.views.JobView"

    def view_replacement(self):
        name, what = self._names()
        return _described(
            self.target,
            by_method={
                "get": {
                    "tags": OPENAI,
                    "operation_id": f"openai_{name}_retrieve",
                    "summary": f"{what.capitalize()} of this key (may poll its worker early)",
                    "responses": {200: shapes.JobObject, **_openai_errors(_JOB_ERRORS)},
                },
                "delete": {
                    "tags": OPENAI,
                    "operation_id": f"openai_{name}_delete",
                    "summary": f"Cancel {what} on its worker and delete it and its result",
                    "responses": {200: shapes.JobDeleted, **_openai_errors(_JOB_ERRORS)},
                },
            },
        )


class JobContentDescription(_JobDescription):
    target_class = "jobs.views.JobContentView"

    def view_replacement(self):
        name, what = self._names()
        return _described(
            self.target,
            tags=OPENAI,
            operation_id=f"openai_{name}_content",
            summary=f"The result of {what}, streamed (Range supported)",
            parameters=[
                OpenApiParameter("variant", str, description="video only (the default); others are not kept"),
                OpenApiParameter("Range", str, location=OpenApiParameter.HEADER, description="bytes=first-last"),
            ],
            responses={
                (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="the whole file"),
                (206, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="the range asked"),
                302: OpenApiResponse(description="MMM_JOB_RESULTS=link: to the upstream's URL of the output"),
                409: OpenApiResponse(shapes.OpenAIErrorAnswer, description="the job has not completed"),
                416: OpenApiResponse(description="the range is past the end"),
                **_openai_errors(_JOB_ERRORS),
            },
        )


WEBHOOKS = ["webhooks"]
_describe(
    "webhooks.views.WebhookEndpointListView",
    by_method={
        "get": {
            "tags": WEBHOOKS,
            "operation_id": "webhook_list",
            "summary": "List the webhook endpoints of client keys",
            "parameters": [OpenApiParameter("api_key", str, description="only this key's (its prefix)")],
            "responses": {200: shapes.WebhookEndpointListAnswer, **_errors((401, 403, 429, 503))},
        },
        "post": {
            "tags": WEBHOOKS,
            "operation_id": "webhook_create",
            "summary": "Register where a key's events are posted",
            "description": "Needs the `admin` scope. The URL is checked against the egress policy (no cloud "
            "metadata addresses). The answer carries the signing secret, shown only this once "
            "(docs/webhooks.md).",
            "request": WebhookEndpointInput,
            "responses": {201: shapes.WebhookEndpointCreated, **_errors(_REGISTRY_ERRORS)},
        },
    },
)
_describe(
    "webhooks.views.WebhookEndpointView",
    by_method={
        "get": {
            "tags": WEBHOOKS,
            "operation_id": "webhook_retrieve",
            "summary": "One webhook endpoint (never its secret)",
            "responses": {200: shapes.WebhookEndpointAnswer, **_errors((401, 403, 404, 429, 503))},
        },
        "delete": {
            "tags": WEBHOOKS,
            "operation_id": "webhook_delete",
            "summary": "Remove a webhook endpoint and its pending deliveries",
            "responses": {200: shapes.Success, **_errors((401, 403, 404, 429, 503))},
        },
    },
)
