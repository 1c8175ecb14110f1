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

from django.core.exceptions import ValidationError

from registry.models import Engine, HttpMethod, WorkerKind
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
    engine: str = ""  # the engine whose /metrics the scraper reads (registry.models.Engine)

    def fill(self, *, base_url: str, api_key: str | None) -> dict[str, Any]:
        """The worker fields for a server of this API at ``base_url``."""
        headers = dict(self.headers)
        if api_key:
            headers.update(self.key_headers(api_key))
        return {
            "kind": self.kind,
            "req_url_template": base_url.rstrip("/") + self.path,
            "method": HttpMethod.POST,
            "headers": headers,
            "body": self.body,
            "response_extract": self.response_extract,
            "preset": self.name,
            **({"engine": self.engine} if self.engine else {}),
        }


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="openai",
            title="OpenAI-compatible server (OpenAI, vLLM, llama.cpp, LM Studio, ...): base URL ending in /v1",
            kind=WorkerKind.OPENAI,
        ),
        Preset(
            name="vllm",
            title="vLLM's OpenAI-compatible server, its queue and KV cache read from /metrics: base URL ending in /v1",
            kind=WorkerKind.OPENAI,
            engine=Engine.VLLM,
        ),
        Preset(
            name="sglang",
            title="SGLang's OpenAI-compatible server, its queue and KV cache read from /metrics "
            "(start it with --enable-metrics): base URL ending in /v1",
            kind=WorkerKind.OPENAI,
            engine=Engine.SGLANG,
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
