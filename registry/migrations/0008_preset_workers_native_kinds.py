"""Workers made by the anthropic, ollama and tgi presets become workers of those native kinds.

Those presets used to make template workers (a body template and an extract path), which could
not carry tools, images, n, usage or a real stream. A worker still as its preset made it (URL
ending in the preset's path, body and extract path unchanged) gets the kind, its base URL, and
no template; one an operator has edited since stays a template worker, as edited.
"""

from django.db import migrations

# What each preset filled in before: (path, body template, extract path).
OLD_PRESETS = {
    "ollama": ("/api/chat", {
        "model": "{MODEL_NAME}", "messages": "{MESSAGES}", "stream": False,
        "options": {"temperature": "{MODEL_TEMPERATURE}", "num_predict": "{MAX_TOKENS}"},
    }, "message.content"),
    "anthropic": ("/v1/messages", {
        "model": "{MODEL_NAME}", "system": "{SYSTEM_PROMPT}", "messages": "{NON_SYSTEM_MESSAGES}",
        "max_tokens": "{MAX_TOKENS|1024}", "temperature": "{MODEL_TEMPERATURE}",
    }, "content[0].text"),
    "tgi": ("/generate", {
        "inputs": "{USER_PROMPT}",
        "parameters": {"temperature": "{MODEL_TEMPERATURE}", "max_new_tokens": "{MAX_TOKENS}"},
    }, "generated_text"),
}


def _split(url: str, path: str) -> str | None:
    """The base URL of a URL made as base + path (+ query), or None if it was not."""
    base, question, query = url.partition("?")
    if not base.endswith(path):
        return None
    return base[: -len(path)] + question + query


def to_native(apps, schema_editor):
    Worker = apps.get_model("registry", "Worker")
    for worker in Worker.objects.filter(kind="template", preset__in=list(OLD_PRESETS)):
        path, body, extract = OLD_PRESETS[worker.preset]
        base = _split(worker.req_url_template, path)
        if base is None or worker.body != body or worker.response_extract != extract or worker.method != "POST":
            continue  # edited since the preset made it: the operator's template stays
        worker.kind, worker.req_url_template, worker.body, worker.response_extract = worker.preset, base, None, ""
        worker.save(update_fields=["kind", "req_url_template", "body", "response_extract"])


def to_template(apps, schema_editor):
    Worker = apps.get_model("registry", "Worker")
    for worker in Worker.objects.filter(kind__in=list(OLD_PRESETS)):
        path, body, extract = OLD_PRESETS[worker.kind]
        base, question, query = worker.req_url_template.partition("?")
        worker.req_url_template = base.rstrip("/") + path + question + query
        worker.kind, worker.body, worker.response_extract = "template", body, extract
        worker.save(update_fields=["kind", "req_url_template", "body", "response_extract"])


class Migration(migrations.Migration):
    dependencies = [("registry", "0007_worker_kinds_usage_extract")]

    operations = [migrations.RunPython(to_native, to_template)]
