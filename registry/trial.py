"""Try a worker by hand: send one prompt and show every step, with its secrets masked.

Used by the admin's "send a test prompt" (a saved worker) and "try before saving" (the values
of an unsaved form). The report shows the request as rendered, the upstream's raw answer, what
the extract path made of it, and how long it took; a failure at any step is part of the report,
not an exception. Header values that carry credentials and query parameters named like one are
masked wherever they appear, in the request and in the answer (upstreams quote keys back).
"""

import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from inference import redaction, upstream
from inference.exceptions import ExtractionFailed, RetryableWorkerError
from inference.protocols import protocol_for
from mmm.api_errors import ApiError
from registry.models import Worker

# Enough of a raw answer to see its shape; a whole long completion is not needed here.
RAW_RESPONSE_CHARS = 20_000


@dataclass(frozen=True)
class TrialReport:
    method: str
    url: str
    headers: dict[str, str]
    body: str
    status: int | None = None
    content_type: str = ""
    raw_response: str = ""
    extracted: str = ""
    extracted_ok: bool = False
    error: str = ""
    latency_ms: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.extracted_ok and not self.error


def worker_try(
    *, worker: Worker, prompt: str, temperature: float | None = None, timeout: float | None = None
) -> TrialReport:
    """Send ``prompt`` to ``worker`` (saved or not) once and report each step."""
    protocol = protocol_for(worker)
    try:
        request = protocol.seed_request(worker=worker, prompt=prompt, temperature=temperature)
    except ApiError as exc:  # e.g. a chat the worker's API cannot take
        return TrialReport(method="POST", url="", headers={}, body="", error=str(exc.detail))
    # What the worker stores as credentials (header values, query values, user info, credential-
    # named body fields) and what the rendered request carries as such.
    secrets = [*worker.secret_values(), *_secrets_of(request)]
    shown = {
        "method": request.method,
        "url": redaction.mask_secrets(request.url, secrets=secrets),
        "headers": {name: ("***" if value in secrets else value) for name, value in request.headers.items()},
        "body": ""
        if request.json_body is None
        else redaction.mask_secrets(json.dumps(request.json_body, ensure_ascii=False, indent=2), secrets=secrets),
    }
    started = time.monotonic()
    try:
        response = upstream.send(request, timeout=timeout or worker.effective_timeout)
    except upstream.UpstreamError as exc:
        return TrialReport(**shown, error=f"no answer: {exc}", latency_ms=(time.monotonic() - started) * 1000)

    raw = response.content.decode("utf-8", errors="replace")
    raw = redaction.mask_secrets(raw[: RAW_RESPONSE_CHARS + 200], secrets=secrets)
    notes = [f"answer cut to its first {RAW_RESPONSE_CHARS} characters"] if len(raw) > RAW_RESPONSE_CHARS else []
    answered = {
        **shown,
        "status": response.status,
        "content_type": response.content_type,
        "raw_response": raw[:RAW_RESPONSE_CHARS],
        "latency_ms": response.seconds * 1000,
        "notes": notes,
    }
    if not 200 <= response.status < 300:
        return TrialReport(**answered, error=f"the upstream answered HTTP {response.status}")
    try:
        extracted = protocol.seed_result(worker=worker, response=response).result
    except ExtractionFailed as exc:
        path = exc.extra.get("path")
        return TrialReport(**answered, error=f"response_extract: {exc.detail}" if path else str(exc.detail))
    except (ApiError, RetryableWorkerError) as exc:
        return TrialReport(**answered, error=str(exc))
    return TrialReport(**answered, extracted=_as_text(extracted, secrets), extracted_ok=True)


def _secrets_of(request: upstream.UpstreamRequest) -> list[str]:
    query = dict(parse_qsl(urlsplit(request.url).query, keep_blank_values=False))
    return [*redaction.secret_header_values(request.headers), *redaction.secret_header_values(query)]


def _as_text(value: Any, secrets: list[str]) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2)
    return redaction.mask_secrets(text, secrets=secrets)
