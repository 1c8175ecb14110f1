"""Presets: the request shapes of well-known model APIs, so onboarding one is one call.

A preset turns a base URL (and a key, where the API wants one) into the worker fields an
operator would otherwise write by hand: the kind (whose protocol in inference/protocols/ knows
the API's paths and shapes), the base URL and the headers.
What it fills in is stored on the worker as ordinary fields, shown by the API and the admin,
and may be edited afterwards like any other worker's; ``Worker.preset`` only records where
the fields came from.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

from registry.models import HttpMethod, WorkerKind
from registry.validators import validate_http_url


@dataclass(frozen=True)
class Preset:
    name: str
    title: str  # what the admin's menu shows
    kind: str = WorkerKind.TEMPLATE
    path: str = ""  # appended to the base URL
    body: dict | None = None
    response_extract: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    key_headers: Callable[[str], dict[str, str]] = lambda key: {"Authorization": f"Bearer {key}"}
    key_required: bool = False
    job_api: dict | None = None  # job workers: how the asynchronous API is called
    # For an API whose paths depend on what the base URL names (fal: the app): base URL ->
    # (the worker's URL, its job_api). Raises ValidationError on a base URL it cannot read.
    job_api_from_url: Callable[[str], tuple[str, dict]] | None = None

    def fill(self, *, base_url: str, api_key: str | None) -> dict[str, Any]:
        """The worker fields for a server of this API at ``base_url``."""
        headers = dict(self.headers)
        if api_key:
            headers.update(self.key_headers(api_key))
        url, job_api = base_url.rstrip("/") + self.path, self.job_api
        if self.job_api_from_url is not None:
            url, job_api = self.job_api_from_url(base_url)
        return {
            "kind": self.kind,
            "req_url_template": url,
            "method": HttpMethod.POST,
            "headers": headers,
            "body": self.body,
            "response_extract": self.response_extract,
            "job_api": job_api,
            "preset": self.name,
        }


# ComfyUI's default text-to-image workflow in its API format, with the prompt and size filled
# in; an operator replaces it with the workflow of their model (a Wan video graph, ...).
COMFYUI_WORKFLOW = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 156680208700286,
            "steps": 20,
            "cfg": 8,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    },
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
    "5": {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": "{WIDTH|512}", "height": "{HEIGHT|512}", "batch_size": 1},
    },
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "{USER_PROMPT}", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "mmm", "images": ["8", 0]}},
}

# ComfyUI's server API: POST /prompt queues a workflow and answers its prompt_id; GET
# /history/{id} is {} until the run ends, then holds its status and each output node's files,
# which GET /view hands over; POST /queue {"delete": [id]} takes a waiting job off the queue.
COMFYUI_JOB_API = {
    "submit_path": "/prompt",
    "id_extract": "prompt_id",
    "poll_path": "/history/{UPSTREAM_ID}",
    "status_extract": "{UPSTREAM_ID}.status.status_str",
    "status_map": {"success": "completed", "error": "failed"},
    "status_missing": "in_progress",
    "error_extract": "{UPSTREAM_ID}.status.messages[-1][1].exception_message",
    "output": "fetch",
    "output_extract": "{UPSTREAM_ID}.outputs.9.images[0]",
    "fetch_path": "/view?filename={OUTPUT.filename}&subfolder={OUTPUT.subfolder}&type={OUTPUT.type}",
    "cancel_method": "POST",
    "cancel_path": "/queue",
    "cancel_body": {"delete": ["{UPSTREAM_ID}"]},
    "probe_path": "/system_stats",
    "content_type": "image/png",
}

# OpenAI's /v1/videos (the Sora shape that aggregators and other gateways serve): create, then
# GET /videos/{id} until status is completed or failed, GET .../content, DELETE to cancel.
OPENAI_VIDEOS_JOB_API = {
    "submit_path": "/videos",
    "id_extract": "id",
    "poll_path": "/videos/{UPSTREAM_ID}",
    "status_extract": "status",
    "progress_extract": "progress",
    "error_extract": "error.message",
    "output": "fetch",
    "fetch_path": "/videos/{UPSTREAM_ID}/content",
    "cancel_method": "DELETE",
    "cancel_path": "/videos/{UPSTREAM_ID}",
    "probe_path": "/videos?limit=1",
    "content_type": "video/mp4",
}


def replicate_job_api(*, output_extract: str) -> dict:
    """Replicate's predictions (api.replicate.com/v1): POST /predictions with the model as
    "version" ("owner/name", or "owner/name:version id"), then GET /predictions/{id} until
    succeeded, failed or canceled; the output is file URLs (a list for most image models, one
    URL for most video models), downloaded without the key; POST .../cancel stops it."""
    return {
        "submit_path": "/predictions",
        "id_extract": "id",
        "poll_path": "/predictions/{UPSTREAM_ID}",
        "status_extract": "status",
        "status_map": {
            "starting": "queued",
            "processing": "in_progress",
            "succeeded": "completed",
            "failed": "failed",
            "canceled": "failed",
        },
        "error_extract": "error",
        "output": "url",
        "output_extract": output_extract,
        "cancel_method": "POST",
        "cancel_path": "/predictions/{UPSTREAM_ID}/cancel",
        "probe_path": "/account",
    }


# Runway's tasks (api.dev.runwayml.com/v1, every call with X-Runway-Version): POST
# /text_to_video answers {"id"}; GET /tasks/{id} says PENDING or THROTTLED (waiting for the
# account's concurrency), RUNNING with progress from 0 to 1, SUCCEEDED with output URLs, or
# FAILED with failure; DELETE /tasks/{id} cancels.
RUNWAY_JOB_API = {
    "submit_path": "/text_to_video",
    "id_extract": "id",
    "poll_path": "/tasks/{UPSTREAM_ID}",
    "status_extract": "status",
    "status_map": {
        "PENDING": "queued",
        "THROTTLED": "queued",
        "RUNNING": "in_progress",
        "SUCCEEDED": "completed",
        "FAILED": "failed",
        "CANCELLED": "failed",
    },
    "progress_extract": "progress",
    "progress_scale": 1,
    "error_extract": "failure",
    "output": "url",
    "output_extract": "output[0]",
    "cancel_method": "DELETE",
    "cancel_path": "/tasks/{UPSTREAM_ID}",
    "probe_path": "/organization",
    "content_type": "video/mp4",
}


def fal_queue(output_extract: str) -> Callable[[str], tuple[str, dict]]:
    """fal's queue for the app a base URL names (https://queue.fal.run/{owner}/{app}[/{path}]).

    Submission goes to the whole endpoint; status, result and cancel live under the app
    without its path (fal's own status_url, response_url and cancel_url say so), hence a
    worker URL of https://queue.fal.run/{owner} and the app in every path. A failed request is
    COMPLETED with an "error"; the output is in the result, not in the status.
    """

    def split(base_url: str) -> tuple[str, dict]:
        scheme, netloc, path, *_ = urlsplit(base_url.rstrip("/"))
        segments = [segment for segment in path.split("/") if segment]
        if len(segments) < 2:
            raise ValidationError(
                {"base_url": "give the app's queue URL, like https://queue.fal.run/fal-ai/flux/dev (owner/app[/path])"}
            )
        owner, app, endpoint = segments[0], segments[1], "/".join(segments[1:])
        request_path = f"/{app}/requests/{{UPSTREAM_ID}}"
        return f"{scheme}://{netloc}/{owner}", {
            "submit_path": f"/{endpoint}",
            "id_extract": "request_id",
            "poll_path": f"{request_path}/status",
            "status_extract": "status",
            "status_map": {"IN_QUEUE": "queued", "IN_PROGRESS": "in_progress", "COMPLETED": "completed"},
            "error_extract": "error",
            "result_path": request_path,
            "output": "url",
            "output_extract": output_extract,
            "cancel_method": "PUT",
            "cancel_path": f"{request_path}/cancel",
        }

    return split


def fal_preset(name: str, what: str, example_app: str, *, output_extract: str) -> Preset:
    return Preset(
        name=name,
        title=f"fal queue, {what}: base URL the app's queue URL, like https://queue.fal.run/{example_app}",
        kind=WorkerKind.JOB,
        body={"prompt": "{USER_PROMPT}", "image_url": "{INPUT_REFERENCE}"},
        key_headers=lambda key: {"Authorization": f"Key {key}"},
        key_required=True,
        job_api_from_url=fal_queue(output_extract),
    )


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="openai",
            title="OpenAI-compatible server (OpenAI, vLLM, llama.cpp, LM Studio, ...): base URL ending in /v1",
            kind=WorkerKind.OPENAI,
        ),
        Preset(
            name="ollama",
            title="Ollama, native API (POST /api/chat): base URL like http://host:11434",
            kind=WorkerKind.OLLAMA,
        ),
        Preset(
            name="anthropic",
            title="Anthropic messages API (POST /v1/messages): base URL https://api.anthropic.com",
            kind=WorkerKind.ANTHROPIC,
            headers={"anthropic-version": "2023-06-01"},
            key_headers=lambda key: {"x-api-key": key},
            key_required=True,
        ),
        Preset(
            name="tgi",
            title="Hugging Face text-generation-inference, Messages API (POST /v1/chat/completions): "
            "base URL like http://host:8080",
            kind=WorkerKind.TGI,
        ),
        Preset(
            name="comfyui",
            title="ComfyUI (POST /prompt, GET /history/{id}, GET /view): base URL like http://host:8188; "
            "edit the body to your workflow",
            kind=WorkerKind.JOB,
            body={"prompt": COMFYUI_WORKFLOW, "client_id": "{JOB_ID}"},
            job_api=COMFYUI_JOB_API,
        ),
        Preset(
            name="openai-videos",
            title="An OpenAI /v1/videos API (an aggregator, or another mmm): base URL ending in /v1",
            kind=WorkerKind.JOB,
            body={"model": "{MODEL_NAME}", "prompt": "{USER_PROMPT}", "size": "{SIZE}", "seconds": "{SECONDS}"},
            job_api=OPENAI_VIDEOS_JOB_API,
        ),
        Preset(
            name="replicate",
            title="Replicate predictions, an image model (output: a list of file URLs): base URL "
            "https://api.replicate.com/v1; upstream_model owner/name",
            kind=WorkerKind.JOB,
            body={
                "version": "{MODEL_NAME}",
                "input": {"prompt": "{USER_PROMPT}", "width": "{WIDTH}", "height": "{HEIGHT}"},
            },
            job_api=replicate_job_api(output_extract="output[0]"),
            key_required=True,
        ),
        Preset(
            name="replicate-video",
            title="Replicate predictions, a video model (output: one file URL): base URL "
            "https://api.replicate.com/v1; upstream_model owner/name",
            kind=WorkerKind.JOB,
            body={"version": "{MODEL_NAME}", "input": {"prompt": "{USER_PROMPT}", "image": "{INPUT_REFERENCE}"}},
            job_api={**replicate_job_api(output_extract="output"), "content_type": "video/mp4"},
            key_required=True,
        ),
        Preset(
            name="runway",
            title="Runway text to video (POST /text_to_video, GET /tasks/{id}): base URL "
            "https://api.dev.runwayml.com/v1; upstream_model like veo3.1",
            kind=WorkerKind.JOB,
            headers={"X-Runway-Version": "2024-11-06"},
            body={"model": "{MODEL_NAME}", "promptText": "{USER_PROMPT}", "ratio": "{WIDTH|1280}:{HEIGHT|720}"},
            job_api=RUNWAY_JOB_API,
            key_required=True,
        ),
        fal_preset("fal", "an image app (answers images[0].url)", "fal-ai/flux/dev", output_extract="images[0].url"),
        fal_preset(
            "fal-video",
            "a video app (answers video.url)",
            "fal-ai/wan/v2.2-a14b/text-to-video",
            output_extract="video.url",
        ),
    )
}


def preset_choices() -> list[tuple[str, str]]:
    return [(preset.name, preset.title) for preset in PRESETS.values()]


def preset_fields(name: str, *, base_url: str | None, api_key: str | None, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` (the worker fields a registration sent) completed by preset ``name``.

    Fields the registration gives itself win over the preset's, and its headers are added to
    the preset's. Raises ValidationError naming the field that is wrong (the API and the
    admin's add form share this).
    """
    preset = PRESETS[name]
    if given.get("req_url_template"):
        raise ValidationError(
            {"req_url_template": f"give base_url instead: the {name} preset adds {preset.path or 'nothing'} to it"}
        )
    if not base_url:
        raise ValidationError({"base_url": f"is required with the {name} preset"})
    try:
        validate_http_url(base_url)
    except ValidationError as exc:
        raise ValidationError({"base_url": exc.messages}) from None
    if preset.key_required and not api_key:
        raise ValidationError({"api_key": f"is required with the {name} preset"})
    filled = preset.fill(base_url=base_url, api_key=api_key)
    if given.get("kind", filled["kind"]) != filled["kind"]:
        raise ValidationError({"kind": f"the {name} preset makes {filled['kind']} workers"})
    given = {field: value for field, value in given.items() if field != "req_url_template"}
    return {**filled, **given, "headers": {**filled["headers"], **(given.get("headers") or {})}}
