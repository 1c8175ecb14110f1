"""The registry API's input and output shapes, including the first implementation's field names."""

from datetime import UTC, datetime

from django.core.exceptions import ValidationError as ModelValidationError
from rest_framework import serializers

from inference.redaction import body_for_display, url_for_display
from mmm.api_fields import (
    RefuseUnknownFieldsMixin,
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    StrictNumberField,
)
from registry.models import HEALTH_FIELDS, HttpMethod, RoutingPolicy, Strategy, Worker, WorkerKind
from registry.presets import PRESETS, preset_fields

# The first implementation's names for fields that have a new name here.
_LEGACY_ALIASES = {"req_type": "method", "header": "headers"}
# Fields of the first implementation with no meaning here, kept on the worker as sent.
_LEGACY_KEPT = ("req_param", "is_stream", "worker_type")


class WorkerKeyInput(RefuseUnknownFieldsMixin, serializers.Serializer):
    model_name = StrictCharField(max_length=200)
    req_url_template = StrictCharField(max_length=2000)


class WorkerRegisterInput(WorkerKeyInput):
    req_url_template = StrictCharField(max_length=2000, required=False)  # required unless a preset is used
    kind = serializers.ChoiceField(choices=WorkerKind.values, required=False)
    upstream_model = StrictCharField(required=False, allow_blank=True, max_length=200)
    preset = serializers.ChoiceField(choices=sorted(PRESETS), required=False)
    base_url = StrictCharField(required=False, max_length=1900)
    api_key = StrictCharField(required=False, max_length=1000)
    method = StrictCharField(required=False)
    req_type = StrictCharField(required=False)
    headers = serializers.DictField(child=StrictCharField(allow_blank=True, trim_whitespace=False), required=False)
    header = serializers.DictField(child=StrictCharField(allow_blank=True, trim_whitespace=False), required=False)
    body = serializers.JSONField(required=False, allow_null=True)
    response_extract = StrictCharField(required=False, allow_blank=True, max_length=500)
    usage_extract = StrictCharField(required=False, allow_blank=True, max_length=500)
    owner = StrictCharField(required=False, allow_blank=True, max_length=200)
    weight = StrictIntegerField(required=False, min_value=0)
    timeout = StrictNumberField(required=False, allow_null=True, min_value=0.1, max_value=3600)
    enabled = StrictBooleanField(required=False)
    health_url = StrictCharField(required=False, allow_blank=True, max_length=2000)
    max_inflight = StrictIntegerField(required=False, allow_null=True, min_value=1)
    ttl = StrictNumberField(required=False, allow_null=True, min_value=1, max_value=86400)
    job_api = serializers.JSONField(required=False, allow_null=True)
    capacity = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=10_000)
    req_param = serializers.JSONField(required=False, allow_null=True)
    is_stream = StrictBooleanField(required=False)
    worker_type = StrictCharField(required=False, allow_blank=True, max_length=100)

    def validate(self, attrs: dict) -> dict:
        for old, new in _LEGACY_ALIASES.items():
            if old in attrs:
                value = attrs.pop(old)
                if new in attrs and attrs[new] != value:
                    raise serializers.ValidationError({old: [f"conflicts with {new!r}; send only one of them"]})
                attrs[new] = value
        if "method" in attrs:
            method = attrs["method"].upper()
            if method not in HttpMethod.values:
                raise serializers.ValidationError({"method": [f"must be one of {', '.join(HttpMethod.values)}"]})
            attrs["method"] = method
        legacy = {name: attrs.pop(name) for name in _LEGACY_KEPT if name in attrs}
        if legacy:
            attrs["legacy_options"] = legacy
        return _apply_preset(attrs)


def _apply_preset(attrs: dict) -> dict:
    """Fill the fields a preset knows from ``base_url`` and ``api_key``; fields the request
    gives itself win, and its headers are added to the preset's."""
    name, base_url, api_key = attrs.pop("preset", None), attrs.pop("base_url", None), attrs.pop("api_key", None)
    if name is None:
        for given, value in (("base_url", base_url), ("api_key", api_key)):
            if value is not None:
                raise serializers.ValidationError({given: ["is only used with a preset"]})
        if "req_url_template" not in attrs:
            raise serializers.ValidationError({"req_url_template": ["This field is required."]})
        return attrs
    try:
        return preset_fields(name, base_url=base_url, api_key=api_key, given=attrs)
    except ModelValidationError as exc:
        raise serializers.ValidationError(exc.message_dict) from None


class WorkerListQuery(serializers.Serializer):
    model_name = serializers.CharField(required=False, max_length=200)


def _epoch_to_iso(seconds: float, now: float) -> str | None:
    """A time from the routing state, or None when it has passed."""
    if seconds <= now:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")


class WorkerOutput(serializers.ModelSerializer):
    """A worker as registered, with its health and live traffic.

    ``context["traffic"]`` maps worker ids to ``routing_state.Traffic`` and ``context["now"]``
    is the routing state's clock.
    """

    # Header names only: values hold upstream API keys and never leave the gateway.
    header_names = serializers.SerializerMethodField()
    expired = serializers.SerializerMethodField()
    traffic = serializers.SerializerMethodField()

    class Meta:
        model = Worker
        fields = [
            "id",
            "model_name",
            "kind",
            "req_url_template",
            "upstream_model",
            "preset",
            "method",
            "header_names",
            "body",
            "response_extract",
            "usage_extract",
            "owner",
            "weight",
            "enabled",
            "timeout",
            "health_url",
            "max_inflight",
            "ttl",
            "job_api",
            "capacity",
            "heartbeat_expires_at",
            "expired",
            *HEALTH_FIELDS,
            "traffic",
            "created_at",
            "updated_at",
        ]

    def get_header_names(self, worker: Worker) -> list[str]:
        return sorted(worker.headers or {})

    def to_representation(self, worker: Worker) -> dict:
        # Keys in query strings and body templates are masked like header values.
        data = super().to_representation(worker)
        data["req_url_template"] = url_for_display(worker.req_url_template)
        data["health_url"] = url_for_display(worker.health_url) if worker.health_url else ""
        data["body"] = body_for_display(worker.body)
        return data

    def get_expired(self, worker: Worker) -> bool:
        return worker.is_expired()

    def get_traffic(self, worker: Worker) -> dict | None:
        seen = self.context.get("traffic", {}).get(worker.pk)
        if seen is None:
            return None
        now = self.context["now"]
        return {
            "in_flight": seen.in_flight,
            "latency_ewma_ms": None if seen.latency_ewma_ms is None else round(seen.latency_ewma_ms, 1),
            "consecutive_failures": seen.consecutive_failures,
            "ejected_until": _epoch_to_iso(seen.ejected_until, now),
            "ejection_reason": seen.ejection_reason if seen.is_ejected(now) else "",
            "ejections": seen.ejections,
            "half_open": seen.is_half_open(now),
            "cooldown_until": _epoch_to_iso(seen.cooldown_until, now),
            "recent_requests": seen.recent_total,
            "recent_success_rate": None if seen.success_rate is None else round(seen.success_rate, 4),
        }


class PolicyInput(RefuseUnknownFieldsMixin, serializers.Serializer):
    model_name = StrictCharField(max_length=200)
    strategy = serializers.ChoiceField(choices=Strategy.choices, required=False)
    fallbacks = serializers.ListField(child=StrictCharField(max_length=200), required=False, max_length=10)
    max_attempts = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=20)
    deadline = StrictNumberField(required=False, allow_null=True, min_value=0.1, max_value=3600)
    per_try_timeout = StrictNumberField(required=False, allow_null=True, min_value=0.1, max_value=3600)


class PolicyKeyInput(RefuseUnknownFieldsMixin, serializers.Serializer):
    model_name = StrictCharField(max_length=200)


class PolicyOutput(serializers.ModelSerializer):
    effective_max_attempts = serializers.IntegerField(read_only=True)
    effective_deadline = serializers.FloatField(read_only=True)

    class Meta:
        model = RoutingPolicy
        fields = [
            "model_name",
            "strategy",
            "fallbacks",
            "max_attempts",
            "deadline",
            "per_try_timeout",
            "effective_max_attempts",
            "effective_deadline",
            "updated_at",
        ]


class ModelOwnerInput(RefuseUnknownFieldsMixin, serializers.Serializer):
    """POST /api/server/model/owner. Keys are named by their prefix (``mmm_ab12cd34``, shown
    in the admin and by create_api_key), never by their secret."""

    model_name = StrictCharField(max_length=200)
    owner = StrictCharField(required=False, allow_null=True, max_length=16)  # null: admins only
    share_with = serializers.ListField(child=StrictCharField(max_length=16), required=False, max_length=100)
    unshare = serializers.ListField(child=StrictCharField(max_length=16), required=False, max_length=100)

    def validate(self, attrs: dict) -> dict:
        if "owner" in attrs:
            attrs["transfer"] = True
        return attrs
