"""/v1/videos and /v1/images/jobs, in OpenAI's /v1/videos shape: thin views over jobs.services.

POST creates (JSON, or multipart/form-data as the openai SDK sends it, with an optional
``input_reference`` file), GET lists the caller's own (cursor pages), GET one (which may poll
its worker early), GET .../content streams the stored result (``Range`` supported), DELETE
cancels on the worker and removes the result. Another key's job is a 404, as an unknown one.
"""

import base64
import re

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpResponse, HttpResponseRedirect
from rest_framework import serializers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import FormParser, MultiPartParser

from inference import openai_api
from inference.openai_views import OpenAIView
from jobs import billing, services
from jobs.exceptions import InvalidJobRequest, JobNotFound, JobNotReady
from jobs.models import JobKind, JobStatus
from jobs.results import result_response
from jobs.scheduler import queue_position, queue_positions
from jobs.shapes import deleted_object, job_object
from mmm.api_fields import StrictCharField
from mmm.parsers import StrictJSONParser

_SIZE = re.compile(r"^\d{1,5}x\d{1,5}$")


class JobInput(serializers.Serializer):
    model = StrictCharField(max_length=200)
    prompt = StrictCharField(max_length=32_000)
    size = StrictCharField(required=False, max_length=11)
    # A string in OpenAI's API ("8"); a number is taken too.
    seconds = serializers.JSONField(required=False)

    def validate_size(self, value: str) -> str:
        if not _SIZE.match(value):
            raise serializers.ValidationError("must be width x height in pixels, e.g. 1280x720")
        return value

    def validate_seconds(self, value) -> str:
        try:
            number = float(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or not 0 < number <= 3600:
            raise serializers.ValidationError('must be a number of seconds above 0 and at most 3600, e.g. "8"')
        return str(int(number)) if number.is_integer() else str(number)


def _json(document: dict, status: int = 200) -> HttpResponse:
    return HttpResponse(openai_api.json_bytes(document), status=status, content_type="application/json")


def _input_reference(value) -> str | None:
    """An uploaded image as a data: URL, or the URL a JSON request names (a string, or
    OpenAI's ``{"image_url": ...}``)."""
    if value is None or value == "":
        return None
    if isinstance(value, UploadedFile):
        if value.size > settings.MMM_JOB_MAX_INPUT_BYTES:
            raise InvalidJobRequest(
                f"input_reference: the file is {value.size} bytes; at most {settings.MMM_JOB_MAX_INPUT_BYTES} are taken",
                param="input_reference",
            )
        content_type = value.content_type or "application/octet-stream"
        return f"data:{content_type};base64," + base64.b64encode(value.read()).decode("ascii")
    if isinstance(value, dict):
        value = value.get("image_url")
    if isinstance(value, str) and value.startswith(("http://", "https://", "data:")) and len(value) < 30_000_000:
        return value
    raise InvalidJobRequest(
        'input_reference: must be an uploaded file, an http(s) or data: URL, or {"image_url": URL}',
        param="input_reference",
    )


class JobsView(OpenAIView):
    kind = JobKind.VIDEO
    parser_classes = [StrictJSONParser, MultiPartParser, FormParser]

    def post(self, request):
        serializer = JobInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        params = {name: data[name] for name in ("size", "seconds") if name in data}
        reference = _input_reference(request.data.get("input_reference"))
        if reference:
            params["input_reference"] = reference
        billing.refuse_over_budget(
            api_key_id=getattr(request.auth, "api_key_id", None),
            model_name=data["model"],
            kind=self.kind,
            params=params,
        )
        job = services.job_create(
            kind=self.kind, model_name=data["model"], prompt=data["prompt"], params=params, caller=request.auth
        )
        return _json(job_object(job, queue_position=queue_position(job)))

    def get(self, request):
        # A plain dict: a QueryDict's "order=" would count as absent, not as a wrong value.
        query = ListQuery(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        page, has_more = services.jobs_list(kind=self.kind, caller=request.auth, **query.validated_data)
        positions = queue_positions(page)
        data = [job_object(job, queue_position=positions.get(job.id)) for job in page]
        return _json(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": has_more,
            }
        )


class ListQuery(serializers.Serializer):
    after = serializers.CharField(required=False, max_length=64, default=None)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=100, default=20)
    order = serializers.ChoiceField(choices=["asc", "desc"], required=False, default="desc")


class JobView(OpenAIView):
    kind = JobKind.VIDEO

    def get(self, request, job_id: str):
        job = services.job_get(public_id=job_id, kind=self.kind, caller=request.auth)
        job = services.job_refresh(job=job)
        return _json(job_object(job, queue_position=queue_position(job)))

    def delete(self, request, job_id: str):
        job = services.job_get(public_id=job_id, kind=self.kind, caller=request.auth)
        services.job_delete(job=job)
        return _json(deleted_object(job))


class AnyAccept(BaseContentNegotiation):
    """The content is bytes whatever the client accepts (the openai SDK asks for
    ``application/binary``); an error is still JSON."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class JobContentView(OpenAIView):
    kind = JobKind.VIDEO
    content_negotiation_class = AnyAccept

    def get(self, request, job_id: str):
        job = services.job_get(public_id=job_id, kind=self.kind, caller=request.auth)
        variant = request.query_params.get("variant")
        if variant not in (None, "video") and self.kind == JobKind.VIDEO:
            raise JobNotFound(f"{job_id}/content?variant={variant}")  # only the video itself is kept
        if job.status != JobStatus.COMPLETED:
            raise JobNotReady(f"job {job_id!r} is {job.public_status}: its content is there once it has completed")
        if job.result_url:
            return HttpResponseRedirect(job.result_url)  # MMM_JOB_RESULTS=link
        return result_response(
            name=job.result_name, content_type=job.result_content_type, range_header=request.headers.get("Range")
        )
