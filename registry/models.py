"""What is registered: the model workers the gateway routes to, with their health as data."""

from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator, MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from inference import redaction, templating
from registry import validators
from registry.fields import EncryptedJSONField, EncryptedQueryURLField, EncryptedSecretsJSONField


class HealthState(models.TextChoices):
    UNKNOWN = "unknown", "unknown"
    HEALTHY = "healthy", "healthy"
    UNHEALTHY = "unhealthy", "unhealthy"


class HttpMethod(models.TextChoices):
    POST = "POST", "POST"
    GET = "GET", "GET"
    PUT = "PUT", "PUT"


# Written only by the prober (conditional updates); read-only in forms and the API.
HEALTH_FIELDS = (
    "health_state",
    "health_changed_at",
    "last_probe_at",
    "last_error",
    "last_error_at",
    "consecutive_failures",
    "consecutive_successes",
    "latency_ms",
)


class Strategy(models.TextChoices):
    LEAST_LOADED = "least_loaded", "least loaded (peak-EWMA latency x in-flight, power of two choices)"
    LEAST_BUSY = "least_busy", "least busy (in-flight requests, power of two choices)"
    ROUND_ROBIN = "round_robin", "round robin (smooth weighted, shared by all processes)"
    RANDOM = "random", "random (weighted)"


class WorkerKind(models.TextChoices):
    """How a worker is called: each kind is one protocol module in inference/protocols/."""

    TEMPLATE = "template", "template (body template and extract path)"
    OPENAI = "openai", "openai (OpenAI-compatible server at a base URL)"
    ANTHROPIC = "anthropic", "anthropic (Anthropic Messages API at a base URL)"
    OLLAMA = "ollama", "ollama (Ollama's /api/chat at a base URL)"
    TGI = "tgi", "tgi (text-generation-inference's Messages API at a base URL)"
    JOB = "job", "job (an asynchronous image or video API: submit, poll, fetch, cancel; docs/jobs.md)"


# Kinds whose request the gateway builds from the chat itself: no body template, a base URL.
BASE_URL_KINDS = (WorkerKind.OPENAI, WorkerKind.ANTHROPIC, WorkerKind.OLLAMA, WorkerKind.TGI)


def alive(now: datetime) -> models.Q:
    """Workers whose registration or heartbeat has not run out (the row form: Worker.is_expired)."""
    return models.Q(heartbeat_expires_at__isnull=True) | models.Q(heartbeat_expires_at__gt=now)


class WorkerQuerySet(models.QuerySet):
    """The one definition of which workers get traffic, as queries; each has a row form on Worker
    (is_dispatchable, is_routable) that says the same, for a row already loaded."""

    def dispatchable(self, now: datetime | None = None) -> "WorkerQuerySet":
        """May get traffic at all: the operator's switches and the heartbeat, not health."""
        return self.filter(alive(now or timezone.now()), enabled=True, weight__gt=0)

    def routable(self, now: datetime | None = None) -> "WorkerQuerySet":
        """Get traffic in normal operation: dispatchable and not unhealthy (routing,
        /v1/models and the mmm_worker_routable metric)."""
        return self.dispatchable(now).exclude(health_state=HealthState.UNHEALTHY)

    def probed(self, now: datetime | None = None) -> "WorkerQuerySet":
        """What the prober checks: enabled and alive, drained and unhealthy ones included (a
        probe is how an unhealthy worker comes back)."""
        return self.filter(alive(now or timezone.now()), enabled=True)


class Worker(models.Model):
    kind = models.CharField(
        max_length=16,
        choices=WorkerKind.choices,
        default=WorkerKind.TEMPLATE,
        help_text="template: the body template is filled and response_extract read. openai: requests to /v1/... "
        "are passed through to the base URL with only the model rewritten. anthropic, ollama, tgi: the chat is "
        "translated to that API and its answer back (docs/api.md).",
    )
    model_name = models.CharField(max_length=200, help_text="Workers with the same name are balanced between.")
    # The query string is encrypted at rest (some APIs take their key there: ?key=...); the
    # column is wider than the 2000 characters a URL may have, for the encrypted form.
    req_url_template = EncryptedQueryURLField(
        "URL template",
        max_length=4000,
        validators=[MaxLengthValidator(2000), validators.validate_http_url],
        help_text="Absolute http(s) URL; may contain {MODEL_NAME} and {USER_PROMPT}, which are percent-encoded. "
        "For openai workers, the base URL (e.g. https://api.example.com/v1).",
    )
    upstream_model = models.CharField(
        max_length=200,
        blank=True,
        help_text="Model name the upstream knows; for openai workers it replaces the client's model "
        "(empty sends the model name as registered).",
    )
    preset = models.CharField(
        max_length=32, blank=True, help_text="The preset that filled in this worker's request, if one did."
    )
    method = models.CharField(max_length=8, choices=HttpMethod.choices, default=HttpMethod.POST)
    # Upstream API keys live here: encrypted at rest (MMM_SECRET_KEYS), never sent back out.
    headers = EncryptedJSONField(default=dict, blank=True, validators=[validators.validate_headers])
    # Credential-named fields (api_key, token, ...) are encrypted at rest, the rest stays readable.
    body = EncryptedSecretsJSONField(
        "body template",
        null=True,
        blank=True,
        validators=[validators.validate_body_template],
        help_text="JSON object or array with {USER_PROMPT}, {MODEL_TEMPERATURE}, {MODEL_NAME} placeholders.",
    )
    response_extract = models.CharField(
        max_length=500,
        blank=True,
        validators=[validators.validate_response_extract],
        help_text="Path to the answer, e.g. choices[0].message.content; empty returns the whole response.",
    )
    usage_extract = models.CharField(
        max_length=500,
        blank=True,
        validators=[validators.validate_response_extract],
        help_text="Template workers: path to the token counts, e.g. usage (an object with prompt_tokens and "
        "completion_tokens, input_tokens and output_tokens, or prompt_eval_count and eval_count); empty reports none.",
    )
    owner = models.CharField(max_length=200, blank=True)
    # The worker-scope key that registered the worker: only it (or an admin) may change it or
    # take it offline. Empty when registered by an admin or with MMM_REQUIRE_AUTH off.
    owner_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="workers", editable=False
    )
    weight = models.IntegerField(
        default=1, validators=[MinValueValidator(0)], help_text="Share of traffic; 0 drains the worker."
    )
    enabled = models.BooleanField(default=True)
    timeout = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.1), MaxValueValidator(3600)],
        help_text="Seconds the upstream may take to answer; empty uses MMM_DEFAULT_TIMEOUT.",
    )
    health_url = EncryptedQueryURLField(
        max_length=4000,
        blank=True,
        validators=[MaxLengthValidator(2000), validators.validate_http_url],
        help_text="Optional URL the prober GETs; without it the prober sends a short real request.",
    )
    legacy_options = EncryptedSecretsJSONField(  # req_param may carry credentials as a body does
        default=dict,
        blank=True,
        validators=[validators.validate_no_nul],
        help_text="Fields of the first implementation (req_param, is_stream, worker_type), kept as sent.",
    )

    max_inflight = models.PositiveIntegerField(
        "max in flight",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Most requests this worker is sent at once, over all gateway processes; empty is no cap.",
    )
    ttl = models.FloatField(
        "heartbeat TTL",
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(86400)],
        help_text="Seconds a registration or heartbeat keeps the worker alive; empty never expires.",
    )
    heartbeat_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Job workers only: how the asynchronous API is called (inference.protocols.job reads it).
    job_api = models.JSONField(
        "job API",
        null=True,
        blank=True,
        validators=[validators.validate_job_api],
        help_text="Job workers: the submit, poll, fetch and cancel paths, extract paths and status words "
        "of the upstream's job API (docs/jobs.md); a preset fills it in.",
    )
    capacity = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(10_000)],
        help_text="Job workers: jobs this worker runs at once; more wait in the gateway's queue. Empty is 1.",
    )

    # Health, written by the prober with conditional updates; never edited in forms.
    health_state = models.CharField(max_length=16, choices=HealthState.choices, default=HealthState.UNKNOWN)
    health_changed_at = models.DateTimeField(null=True, blank=True)
    last_probe_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    consecutive_successes = models.PositiveIntegerField(default=0)
    latency_ms = models.FloatField(null=True, blank=True, help_text="Moving average of probe latency.")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = WorkerQuerySet.as_manager()

    class Meta:
        ordering = ["model_name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["model_name", "req_url_template"], name="worker_unique_model_url"),
            models.CheckConstraint(condition=models.Q(weight__gte=0), name="worker_weight_not_negative"),
        ]

    def __str__(self) -> str:
        # Shown in admin pages and messages and stored in the admin's history: no query secrets.
        return f"{self.model_name} @ {self.display_url}"

    @property
    def display_url(self) -> str:
        """The URL template as people see it: user info and query values masked."""
        return redaction.url_for_display(self.req_url_template)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        for field in ("req_url_template", "health_url"):
            refusal = validators.egress_refusal(getattr(self, field))
            if refusal:
                errors[field] = refusal
        clash = validators.password_and_authorization(self.req_url_template, self.headers)
        if clash:
            errors.setdefault("req_url_template", clash)
        if self.kind != WorkerKind.JOB and self.job_api is not None:
            errors["job_api"] = "is only for job workers"
        if self.kind == WorkerKind.JOB:
            self._clean_job_worker(errors)
        elif self.kind in BASE_URL_KINDS:
            # The request is built from the client's chat; a template would be silently ignored.
            if self.body is not None:
                errors["body"] = f"must be empty for {self.kind} workers: their request is built from the client's chat"
            if self.method != HttpMethod.POST:
                errors["method"] = f"must be POST for {self.kind} workers"
            if templating.mentions(self.req_url_template, templating.USER_PROMPT):
                errors.setdefault(
                    "req_url_template", f"must be the server's base URL for {self.kind} workers, without placeholders"
                )
            # The translating kinds read their API's answer themselves; a path would be ignored.
            if self.kind != WorkerKind.OPENAI and self.response_extract:
                errors["response_extract"] = (
                    f"must be empty for {self.kind} workers: they read their API's answer themselves"
                )
            if self.usage_extract:
                errors["usage_extract"] = (
                    f"must be empty for {self.kind} workers: they read their API's usage themselves"
                )
        else:
            if self.body is None and self.method != HttpMethod.GET:
                errors["body"] = f"is required for {self.method} workers (only GET may omit it)"
            prompt_in_url = "{" + templating.USER_PROMPT + "}" in (self.req_url_template or "")
            if not prompt_in_url and not any(
                templating.mentions(self.body, name) for name in templating.PROMPT_PLACEHOLDERS
            ):
                errors.setdefault(
                    "body", "must contain {USER_PROMPT} or {MESSAGES} (or the URL template {USER_PROMPT})"
                )
        if errors:
            raise ValidationError(errors)

    def _clean_job_worker(self, errors: dict[str, str]) -> None:
        """A job worker: a base URL, a submit body with the prompt, and its job API."""
        if self.job_api is None:
            errors["job_api"] = "is required for job workers (a preset such as comfyui or openai-videos fills it in)"
        if templating.mentions(self.req_url_template, templating.USER_PROMPT):
            errors.setdefault("req_url_template", "must be the server's base URL for job workers, without placeholders")
        if self.method != HttpMethod.POST:
            errors["method"] = "must be POST for job workers (the job API says how each call is sent)"
        if self.body is None:
            errors["body"] = "is required for job workers: the submission's body, with {USER_PROMPT}"
        elif not templating.mentions(self.body, templating.USER_PROMPT):
            errors["body"] = "must contain {USER_PROMPT} for job workers (the submission's prompt)"
        for name in ("response_extract", "usage_extract"):
            if getattr(self, name):
                errors[name] = "must be empty for job workers: job_api says how their answers are read"

    @property
    def job_capacity(self) -> int:
        return self.capacity or 1

    def is_expired(self, now: datetime | None = None) -> bool:
        """A heartbeat worker whose last registration or heartbeat has run out."""
        return self.heartbeat_expires_at is not None and self.heartbeat_expires_at <= (now or timezone.now())

    def is_dispatchable(self, now: datetime | None = None) -> bool:
        """The row form of WorkerQuerySet.dispatchable."""
        return self.enabled and self.weight > 0 and not self.is_expired(now)

    def is_routable(self, now: datetime | None = None) -> bool:
        """The row form of WorkerQuerySet.routable."""
        return self.is_dispatchable(now) and self.health_state != HealthState.UNHEALTHY

    @property
    def effective_timeout(self) -> float:
        return self.timeout or settings.MMM_DEFAULT_TIMEOUT

    @property
    def sent_model_name(self) -> str:
        """The model name put in requests to the upstream."""
        return self.upstream_model or self.model_name

    def health_after_probe(
        self, *, ok: bool, failures_to_unhealthy: int, successes_to_healthy: int
    ) -> tuple[str, int, int]:
        """(state, consecutive failures, consecutive successes) once a probe has passed or failed.

        An unhealthy worker needs ``successes_to_healthy`` passes in a row to come back, so one
        lucky answer from a flapping server does not send it traffic again; a worker whose
        state is still unknown is healthy after its first pass.
        """
        if ok:
            successes = self.consecutive_successes + 1
            recovering = self.health_state == HealthState.UNHEALTHY and successes < successes_to_healthy
            return (HealthState.UNHEALTHY if recovering else HealthState.HEALTHY), 0, successes
        failures = self.consecutive_failures + 1
        state = HealthState.UNHEALTHY if failures >= failures_to_unhealthy else self.health_state
        return state, failures, 0

    def secret_values(self) -> list[str]:
        """What must be masked wherever an upstream's answer is quoted (see inference.redaction)."""
        return redaction.secret_values(headers=self.headers, url=self.req_url_template, body=self.body)


class RoutingPolicy(models.Model):
    """How requests for one model name are balanced, retried and sent elsewhere.

    A model without a policy uses the defaults (least_loaded, MMM_DEFAULT_MAX_ATTEMPTS,
    MMM_DEFAULT_DEADLINE, no fallbacks), so a policy is only needed to change them.
    """

    model_name = models.CharField(max_length=200, unique=True)
    strategy = models.CharField(max_length=16, choices=Strategy.choices, default=Strategy.LEAST_LOADED)
    fallbacks = models.JSONField(
        default=list,
        blank=True,
        validators=[validators.validate_model_name_list],
        help_text='Model names tried in order when this one has no routable worker or all attempts failed, e.g. ["small-model"].',
    )
    max_attempts = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(20)],
        help_text="Tries per request on this model, each on another worker; empty uses MMM_DEFAULT_MAX_ATTEMPTS.",
    )
    deadline = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.1), MaxValueValidator(3600)],
        help_text="Seconds for the whole request, retries and fallbacks included; empty uses MMM_DEFAULT_DEADLINE.",
    )
    per_try_timeout = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.1), MaxValueValidator(3600)],
        help_text="Seconds one try may take; empty uses each worker's timeout.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model_name"]
        verbose_name_plural = "routing policies"

    def __str__(self) -> str:
        return self.model_name

    def clean(self) -> None:
        if self.model_name in (self.fallbacks or []):
            raise ValidationError({"fallbacks": "must not contain the model itself"})

    @property
    def effective_max_attempts(self) -> int:
        return self.max_attempts or settings.MMM_DEFAULT_MAX_ATTEMPTS

    @property
    def effective_deadline(self) -> float:
        return self.deadline or settings.MMM_DEFAULT_DEADLINE

    @classmethod
    def default_for(cls, model_name: str) -> "RoutingPolicy":
        return cls(model_name=model_name)


class WorkerEvent(models.Model):
    """Who registered, changed or took offline which worker, and when. Written by the services
    and the admin in the same transaction as the change; read-only everywhere."""

    class Action(models.TextChoices):
        REGISTERED = "registered", "registered"
        CHANGED = "changed", "changed"
        OFFLINE = "offline", "taken offline"
        ENABLED = "enabled", "enabled"
        DISABLED = "disabled", "disabled"

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    action = models.CharField(max_length=16, choices=Action.choices)
    # Plain values, not foreign keys: the record outlives the worker it tells about.
    worker_id = models.BigIntegerField(null=True)
    model_name = models.CharField(max_length=200)
    url = models.CharField("URL (query string left out)", max_length=2000)
    changed_fields = models.JSONField(default=list, blank=True)
    actor = models.CharField(max_length=300, help_text="The key or admin user, as it was named then.")
    api_key = models.ForeignKey("accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.model_name} @ {self.url}"


class ModelOwner(models.Model):
    """Which worker key a model name belongs to: only it, the keys it is shared with and admins
    may add workers to the model, since every worker of a model gets a share of its clients'
    prompts. The first worker key to register a worker under a new name gets it; a name first
    registered by an admin (or with MMM_REQUIRE_AUTH off) has no owner, so only admins and the
    keys it is shared with may add to it. Admins transfer and share it (the admin, or
    POST /api/server/model/owner)."""

    model_name = models.CharField(max_length=200, unique=True)
    # A deleted key leaves its models ownerless (admins only), never free for another key to take.
    owner_key = models.ForeignKey(
        "accounts.ApiKey",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_models",
        help_text="Empty: only admins and the keys below may add workers to this model.",
    )
    shared_with = models.ManyToManyField(
        "accounts.ApiKey",
        blank=True,
        related_name="shared_models",
        help_text="Worker keys that may add their own workers to this model too.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model_name"]
        verbose_name = "model owner"

    def __str__(self) -> str:
        return self.model_name

    def admits(self, api_key_id: int | None) -> bool:
        """Whether the worker key ``api_key_id`` may add a worker to this model."""
        if api_key_id is None:
            return False
        return api_key_id == self.owner_key_id or self.shared_with.filter(pk=api_key_id).exists()
