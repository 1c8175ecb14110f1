"""``job`` workers: asynchronous image and video APIs, where a submission returns an id to poll.

ComfyUI (``/prompt``, ``/history/{id}``, ``/view``), Replicate's predictions, Runway's tasks,
fal's queue and the ``/v1/videos`` shape all work so: submit, poll until a status word says the
job ended, then fetch the output (a URL, base64 in the answer, or the bytes of another call),
and cancel on request. What differs is paths, field names and words, so one protocol reads them
from the worker's ``job_api`` (``JobApi``): templates for the calls and extract paths into the
answers (``inference.extract``), with ``{UPSTREAM_ID}`` (the upstream's id of the job) and
``{OUTPUT}`` / ``{OUTPUT.field}`` (what ``output_extract`` found) filled into paths and bodies.

Every call here goes to the worker it is given: a job lives on the server that accepted it, so
the scheduler (``jobs.runner``) hands the accepting worker to poll, fetch and cancel, and only
submission fails over. Failures are classified as for chat: RetryableWorkerError for what
another try may not meet (unreachable, timed out, 5xx, 429), an ApiError for a refusal.
"""

import base64
import binascii
import functools
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote, urlsplit

from django.conf import settings

from inference import extract, redaction, templating, upstream
from inference.exceptions import UpstreamFailed, UpstreamRejected
from inference.protocols.base import (
    Completed,
    InvalidChatRequest,
    checked_document,
    classified,
    raise_if_worker_failed,
    secrets_of,
    send_whole,
    where,
)

if TYPE_CHECKING:
    from registry.models import Worker

# Our words for where a job is, as OpenAI's /v1/videos says them.
QUEUED, IN_PROGRESS, COMPLETED, FAILED = "queued", "in_progress", "completed", "failed"
STATUSES = (QUEUED, IN_PROGRESS, COMPLETED, FAILED)
# How the output of a finished job is got: a URL to download, base64 in the poll's answer, or
# the bytes another call (fetch_path) answers with.
OUTPUT_KINDS = ("url", "base64", "fetch")

_PLACEHOLDER = re.compile(r"\{(UPSTREAM_ID|OUTPUT(?:\.[A-Za-z0-9_]+)?)\}")
_METHODS = ("GET", "POST", "PUT", "DELETE")


@dataclass(frozen=True)
class JobApi:
    """A worker's ``job_api``, checked. Paths are appended to the worker's base URL."""

    submit_path: str
    id_extract: str
    poll_path: str
    status_extract: str
    status_map: dict[str, str] = field(default_factory=dict)
    # What a poll means when status_extract finds nothing (ComfyUI's history is {} until done).
    status_missing: str = IN_PROGRESS
    progress_extract: str = ""
    progress_scale: float = 100.0  # the upstream's number for "all done" (1 for a fraction)
    error_extract: str = ""
    output: str = "fetch"
    output_extract: str = ""
    # Where a finished job's answer is, when the poll's answer holds only its status (fal's
    # queue: GET .../requests/{id}); output_extract then reads that answer.
    result_path: str = ""
    fetch_path: str = ""
    cancel_method: str = ""  # empty: the API has no cancel; the job is only forgotten
    cancel_path: str = ""
    cancel_body: Any = None
    probe_path: str = ""  # what the prober GETs (a job worker is never probed by submitting a job)
    content_type: str = ""  # of the output, when the upstream does not say

    @classmethod
    def from_json(cls, value: Any) -> "JobApi":
        """Parse a worker's job_api; ValueError says which field is wrong and why."""
        if not isinstance(value, dict):
            raise ValueError("must be a JSON object (docs/jobs.md lists its fields)")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        for name in ("submit_path", "id_extract", "poll_path", "status_extract"):
            if not isinstance(value.get(name), str) or (name != "status_extract" and not value.get(name)):
                raise ValueError(f"{name}: is required (a string)")
        for name in known - {"status_map", "cancel_body", "progress_scale"}:
            if name in value and not isinstance(value[name], str):
                raise ValueError(f"{name}: must be a string")
        for name in ("id_extract", "status_extract", "progress_extract", "error_extract", "output_extract"):
            try:
                extract.parse_path(_sample(value.get(name, "")))
            except extract.PathSyntaxError as exc:
                raise ValueError(f"{name}: {exc}") from None
        for name in ("submit_path", "poll_path", "result_path", "fetch_path", "cancel_path", "probe_path"):
            path = value.get(name, "")
            if path and not path.startswith("/"):
                raise ValueError(f"{name}: must start with / (it is appended to the base URL)")
        words = value.get("status_map", {})
        if not isinstance(words, dict) or not all(
            isinstance(word, str) and status in STATUSES for word, status in words.items()
        ):
            raise ValueError(f"status_map: must map the upstream's words to one of {', '.join(STATUSES)}")
        if value.get("status_missing", IN_PROGRESS) not in STATUSES:
            raise ValueError(f"status_missing: must be one of {', '.join(STATUSES)}")
        if value.get("output", "fetch") not in OUTPUT_KINDS:
            raise ValueError(f"output: must be one of {', '.join(OUTPUT_KINDS)}")
        if value.get("output", "fetch") in ("url", "base64") and not value.get("output_extract"):
            raise ValueError("output_extract: is required when output is url or base64")
        if value.get("output", "fetch") == "fetch" and not value.get("fetch_path"):
            raise ValueError("fetch_path: is required when output is fetch")
        if value.get("cancel_method", "") not in ("", *_METHODS):
            raise ValueError(f"cancel_method: must be one of {', '.join(_METHODS)} (or empty: no cancel)")
        if bool(value.get("cancel_method")) != bool(value.get("cancel_path")):
            raise ValueError("cancel_method and cancel_path: give both, or neither")
        scale = value.get("progress_scale", 100.0)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0:
            raise ValueError("progress_scale: must be a number above 0")
        return cls(**{**value, "progress_scale": float(scale)})


def _sample(path: str) -> str:
    """A path with its placeholders filled, to check its syntax when it is saved."""
    return _PLACEHOLDER.sub("x", path)


@functools.lru_cache(maxsize=256)
def _parsed_api(text: str) -> JobApi:
    return JobApi.from_json(json.loads(text))


def job_api_of(worker: "Worker") -> JobApi:
    """The worker's job_api, parsed once per process per version of it."""
    return _parsed_api(json.dumps(worker.job_api, sort_keys=True))


@dataclass(frozen=True)
class Submission:
    """What a client asked a job to make: the values a submit body template is filled from."""

    prompt: str
    job_id: str  # the gateway's public id
    size: str | None = None
    seconds: str | None = None
    input_reference: str | None = None  # a URL or data: URL

    def values(self, worker: "Worker") -> dict[str, Any]:
        width, height = _dimensions(self.size)
        return {
            templating.USER_PROMPT: self.prompt,
            templating.MODEL_NAME: worker.sent_model_name,
            templating.SIZE: self.size,
            templating.WIDTH: width,
            templating.HEIGHT: height,
            templating.SECONDS: self.seconds,
            templating.INPUT_REFERENCE: self.input_reference,
            templating.JOB_ID: self.job_id,
        }


def _dimensions(size: str | None) -> tuple[int | None, int | None]:
    if not size or "x" not in size:
        return None, None
    width, _, height = size.partition("x")
    return (int(width), int(height)) if width.isdigit() and height.isdigit() else (None, None)


@dataclass(frozen=True)
class Polled:
    status: str  # one of STATUSES
    upstream_status: str  # the upstream's own word, for the operator
    progress: int | None = None  # 0 to 100
    error: str = ""
    output: Any = None  # what output_extract found, once completed


@dataclass(frozen=True)
class Fetched:
    content_type: str
    size: int = 0  # bytes written
    url: str = ""  # set instead when the output is passed on as the upstream's URL


class JobProtocol:
    kind = "job"

    def serves(self, endpoint: str) -> bool:
        return False  # only the jobs API (/v1/videos, /v1/images/jobs) uses job workers

    def chat(self, *, worker: "Worker", chat: dict, stream: bool, attempt) -> Any:
        raise self._not_chat(worker)

    def passthrough(self, *, worker: "Worker", endpoint: str, body: dict, stream: bool, attempt) -> Any:
        raise self._not_chat(worker)

    def seed_request(self, *, worker: "Worker", prompt: str, temperature: float | None) -> upstream.UpstreamRequest:
        raise self._not_chat(worker)

    def seed_result(self, *, worker: "Worker", response: upstream.UpstreamResponse) -> Completed:
        raise self._not_chat(worker)

    def _not_chat(self, worker: "Worker") -> InvalidChatRequest:
        return InvalidChatRequest(
            f"model {worker.model_name!r} is served by job workers, which make images and videos asynchronously: "
            "use POST /v1/videos or POST /v1/images/jobs",
            param="model",
        )

    def complete(self, *, worker: "Worker", prompt: str, temperature: float | None, timeout: float) -> Completed:
        """The prober's check: a GET of probe_path (or the base URL). Submitting a job to see
        whether the worker answers would take one of its slots for minutes."""
        api = job_api_of(worker)
        request = self._request(worker, "GET", api.probe_path or "/")
        response = send_whole(request, worker=worker, timeout=timeout)
        raise_if_worker_failed(response, worker=worker, url=request.url)
        if not 200 <= response.status < 300:
            raise UpstreamRejected(
                f"{where(worker, request.url)} answered the probe with HTTP {response.status}",
                upstream_status=response.status,
            )
        return Completed(result="", upstream_seconds=response.seconds)

    # --- the job's calls ---------------------------------------------------------------------

    def submit(self, *, worker: "Worker", submission: Submission, timeout: float) -> str:
        """Submit; return the upstream's id of the job. RetryableWorkerError means another
        worker may take it (unreachable, 5xx, 429); UpstreamRejected that none would."""
        api = job_api_of(worker)
        body = templating.render_body(worker.body, submission.values(worker))
        request = self._request(worker, "POST", api.submit_path, body=body)
        document = checked_document(worker, send_whole(request, worker=worker, timeout=timeout), request.url)
        upstream_id = self._extract(worker, document, api.id_extract, request.url, what="id_extract")
        if not isinstance(upstream_id, (str, int)) or isinstance(upstream_id, bool) or str(upstream_id) == "":
            raise UpstreamFailed(f"{where(worker, request.url)}: id_extract {api.id_extract!r} found no job id")
        return str(upstream_id)

    def poll(self, *, worker: "Worker", upstream_id: str, timeout: float) -> Polled:
        api = job_api_of(worker)
        request = self._request(worker, "GET", _fill(api.poll_path, upstream_id=upstream_id))
        document = checked_document(worker, send_whole(request, worker=worker, timeout=timeout), request.url)
        word = self._find(document, api.status_extract, upstream_id)
        if word is None:
            status, shown = api.status_missing, ""
        else:
            shown = str(word)
            status = api.status_map.get(shown) or (shown if shown in STATUSES else IN_PROGRESS)
        progress = self._progress(document, api, upstream_id)
        if status == COMPLETED and api.error_extract and self._find(document, api.error_extract, upstream_id):
            status = FAILED  # done, and with an error: how fal's queue reports a request that failed
        if status == COMPLETED and api.result_path:
            request = self._request(worker, "GET", _fill(api.result_path, upstream_id=upstream_id))
            document = checked_document(worker, send_whole(request, worker=worker, timeout=timeout), request.url)
        if status == COMPLETED:
            output = self._find(document, api.output_extract, upstream_id) if api.output_extract else None
            if api.output in ("url", "base64") and not isinstance(output, str):
                raise UpstreamFailed(
                    f"{where(worker, request.url)}: the job is {shown or 'done'} but output_extract "
                    f"{api.output_extract!r} found no {api.output} string"
                )
            return Polled(status=COMPLETED, upstream_status=shown, progress=100, output=output)
        if status == FAILED:
            error = self._find(document, api.error_extract, upstream_id) if api.error_extract else None
            message = error if isinstance(error, str) else (str(error) if error else f"the upstream said {shown!r}")
            return Polled(status=FAILED, upstream_status=shown, progress=progress, error=self._masked(worker, message))
        return Polled(status=status, upstream_status=shown, progress=progress)

    def fetch(self, *, worker: "Worker", upstream_id: str, output: Any, into: BinaryIO, timeout: float) -> Fetched:
        """Write the finished job's output to ``into``."""
        api = job_api_of(worker)
        if api.output == "base64":
            return self._decoded(worker, api, output, into)
        if api.output == "url":
            request = upstream.UpstreamRequest(method="GET", url=output, headers=self._headers_for(worker, output))
        else:
            request = self._request(worker, "GET", _fill(api.fetch_path, upstream_id=upstream_id, output=output))
        try:
            got = upstream.download(request, into=into, timeout=timeout, max_bytes=settings.MMM_JOB_MAX_RESULT_BYTES)
        except upstream.UpstreamError as exc:
            raise classified(exc, where(worker, request.url)) from None
        answered = upstream.UpstreamResponse(
            status=got.status, content=got.error_body, content_type=got.content_type, seconds=0
        )
        raise_if_worker_failed(answered, worker=worker, url=request.url)
        if not 200 <= got.status < 300:
            raise UpstreamRejected(
                f"{where(worker, request.url)} refused to hand over the output with HTTP {got.status}: "
                f"{answered.snippet(secrets=secrets_of(worker))}",
                upstream_status=got.status,
            )
        return Fetched(content_type=api.content_type or got.content_type or "application/octet-stream", size=got.size)

    def cancel(self, *, worker: "Worker", upstream_id: str, timeout: float) -> bool:
        """Ask the worker to stop the job; False when its API has no cancel."""
        api = job_api_of(worker)
        if not api.cancel_method:
            return False
        body = _fill_json(api.cancel_body, upstream_id=upstream_id)
        request = self._request(worker, api.cancel_method, _fill(api.cancel_path, upstream_id=upstream_id), body=body)
        response = send_whole(request, worker=worker, timeout=timeout)
        raise_if_worker_failed(response, worker=worker, url=request.url)
        if not 200 <= response.status < 300 and response.status != 404:  # 404: already gone
            raise UpstreamRejected(
                f"{where(worker, request.url)} refused the cancel with HTTP {response.status}: "
                f"{response.snippet(secrets=secrets_of(worker))}",
                upstream_status=response.status,
            )
        return True

    # --- shared ------------------------------------------------------------------------------

    def _request(self, worker: "Worker", method: str, path: str, *, body: Any = None) -> upstream.UpstreamRequest:
        base, question, query = worker.req_url_template.partition("?")
        path, path_question, path_query = path.partition("?")
        joined = "&".join(part for part in (path_query, query) if part)
        url = base.rstrip("/") + path + (("?" + joined) if (question or path_question) and joined else "")
        return upstream.UpstreamRequest(method=method, url=url, headers=dict(worker.headers or {}), json_body=body)

    def _headers_for(self, worker: "Worker", url: str) -> dict[str, str]:
        """The worker's headers (its key) go only to the worker's own origin: an output URL on
        a CDN gets none of them."""
        mine, theirs = urlsplit(worker.req_url_template), urlsplit(url)
        same = (mine.scheme, mine.hostname, mine.port) == (theirs.scheme, theirs.hostname, theirs.port)
        return dict(worker.headers or {}) if same else {}

    def _extract(self, worker: "Worker", document: Any, path: str, url: str, *, what: str) -> Any:
        try:
            return extract.apply_path(document, extract.parse_path(path), path=path)
        except extract.PathMismatch as exc:
            raise UpstreamFailed(
                f"{where(worker, url)}: {what} {exc.path!r} failed at {exc.at!r}: {exc.reason}"
            ) from None

    def _find(self, document: Any, path: str, upstream_id: str) -> Any:
        """What ``path`` (which may start with {UPSTREAM_ID}) points at, or None."""
        if not path:
            return document
        filled = _fill(path, upstream_id=upstream_id, encode=False)
        try:
            return extract.apply_path(document, extract.parse_path(filled), path=filled)
        except (extract.PathMismatch, extract.PathSyntaxError):
            return None

    def _progress(self, document: Any, api: JobApi, upstream_id: str) -> int | None:
        if not api.progress_extract:
            return None
        value = self._find(document, api.progress_extract, upstream_id)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return max(0, min(100, round(value * 100 / api.progress_scale)))

    def _decoded(self, worker: "Worker", api: JobApi, output: str, into: BinaryIO) -> Fetched:
        content_type = api.content_type or "application/octet-stream"
        if output.startswith("data:"):
            header, _, output = output.partition(",")
            content_type = header[5:].split(";")[0] or content_type
        try:
            data = base64.b64decode(output, validate=True)
        except (binascii.Error, ValueError):
            raise UpstreamFailed(f"{where(worker, worker.req_url_template)}: the output is not valid base64") from None
        into.write(data)
        return Fetched(content_type=content_type, size=len(data))

    def _masked(self, worker: "Worker", text: str) -> str:
        return redaction.mask_secrets(text, secrets=secrets_of(worker))[:2000]


def _fill(template: str, *, upstream_id: str, output: Any = None, encode: bool = True) -> str:
    """``{UPSTREAM_ID}``, ``{OUTPUT}`` and ``{OUTPUT.field}`` in a path, each value one URL part."""

    def value(match: re.Match) -> str:
        name = match.group(1)
        if name == "UPSTREAM_ID":
            text = upstream_id
        elif name == "OUTPUT":
            text = output if isinstance(output, str) else ""
        else:
            found = output.get(name.split(".", 1)[1]) if isinstance(output, dict) else None
            text = "" if found is None else str(found)
        return quote(text, safe="") if encode else text

    return _PLACEHOLDER.sub(value, template)


def _fill_json(template: Any, *, upstream_id: str) -> Any:
    if isinstance(template, str):
        return _fill(template, upstream_id=upstream_id, encode=False)
    if isinstance(template, dict):
        return {key: _fill_json(value, upstream_id=upstream_id) for key, value in template.items()}
    if isinstance(template, list):
        return [_fill_json(item, upstream_id=upstream_id) for item in template]
    return template
