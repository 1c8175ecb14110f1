"""The operator's view of the registry: workers with their health, filters and actions."""

import contextvars
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from accounts.caller import Caller
from inference import redaction
from inference.redaction import MASK
from inference.routing import routing_table
from inference.routing_state import routing_state
from registry.admin_pages import WorkerConsoleAdmin
from registry.audit import worker_event_record
from registry.models import HEALTH_FIELDS, HttpMethod, ModelOwner, RoutingPolicy, Worker, WorkerEvent, WorkerKind
from registry.presets import preset_choices, preset_fields
from registry.services import workers_set_enabled
from registry.worker_health import worker_health

STATUS_FIELDS = (*HEALTH_FIELDS, "created_at", "updated_at")
# What a worker is sent and how its answer is read: the add form and the change form alike.
WORKER_REQUEST_FIELDS = (
    "model_name",
    "kind",
    "req_url_template",
    "upstream_model",
    "method",
    "headers",
    "body",
    "response_extract",
    "usage_extract",
    "job_api",
)
# The live traffic of the changelist page being rendered, read once for all its rows.
_page_traffic: contextvars.ContextVar = contextvars.ContextVar("page_traffic", default=None)
# The worker page's health: one verdict from probes and traffic, then each source without counts.
TRAFFIC_FIELDS = ("health", "live_traffic", "probes", "heartbeat")


class WorkerForm(forms.ModelForm):
    """Stored secrets are write-only, as in a password field: header values, the URLs' user info
    and query values and credential-named body fields are shown as ``***``, and a value sent
    back as ``***`` keeps what is stored. A new value replaces it; a removed one removes it."""

    # Field -> (how the stored value is shown, how a value sent back gets its masked parts back).
    MASKED = {
        "req_url_template": (redaction.url_for_display, redaction.url_unmasked),
        "health_url": (redaction.url_for_display, redaction.url_unmasked),
        "headers": (redaction.headers_for_display, redaction.headers_unmasked),
        "body": (redaction.body_for_display, redaction.body_unmasked),
    }

    class Meta:
        model = Worker
        fields = "__all__"
        help_texts = {
            "headers": f"JSON object. Stored values are shown as {MASK!r}; leave {MASK!r} to keep a value, "
            "type a new one to replace it. Values are encrypted at rest.",
            "body": f"Values of credential-named fields (api_key, token, ...) are shown as {MASK!r}; leave "
            f"{MASK!r} to keep one. They are encrypted at rest.",
            "req_url_template": f"A password and query values are shown as {MASK!r}; leave {MASK!r} to keep them. "
            "They are encrypted at rest.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._stored = {name: getattr(self.instance, name) for name in self.MASKED} if self.instance.pk else {}
        for name, value in self._stored.items():
            if name in self.fields:
                self.initial[name] = self.MASKED[name][0](value)

    def _unmasked(self, name: str):
        value = self.cleaned_data.get(name)
        if name not in self._stored:
            return value
        show, unmask = self.MASKED[name]
        stored = self._stored[name]
        if value == show(stored):
            return stored  # sent back as shown: unchanged
        return unmask(value, stored)

    def clean_req_url_template(self):
        return self._unmasked("req_url_template")

    def clean_health_url(self):
        return self._unmasked("health_url")

    def clean_headers(self):
        return self._unmasked("headers")

    def clean_body(self):
        return self._unmasked("body")

    @property
    def changed_data(self) -> list[str]:
        cleaned = getattr(self, "cleaned_data", {})
        return [
            name
            for name in super().changed_data
            if not (name in self._stored and name in cleaned and cleaned[name] == self._stored[name])
        ]


def admin_caller(request) -> Caller:
    return Caller.for_staff(request.user)


class WorkerAddForm(forms.ModelForm):
    """The add form, with the presets: choose one, give a base URL (and a key), and the
    worker's URL, headers, body and extract path are filled in as the API would."""

    use_preset = forms.ChoiceField(
        label="preset", choices=[("", "none: fill in the fields below by hand"), *preset_choices()], required=False
    )
    base_url = forms.CharField(required=False, help_text="With a preset: the server's base URL.")
    api_key = forms.CharField(
        required=False, widget=forms.PasswordInput, help_text="With a preset, if the API needs one; stored as a header."
    )

    class Meta:
        model = Worker
        fields = "__all__"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["req_url_template"].required = False  # a preset fills it in
        # Empty, valid JSON to type into, not the literal null of a missing value.
        self.initial.setdefault("headers", {})
        self.initial["headers"] = self.initial["headers"] or {}
        self.initial["body"] = {} if self.initial.get("body") is None else self.initial["body"]

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("body") == {} and (
            cleaned.get("kind") == WorkerKind.OPENAI or cleaned.get("method") == HttpMethod.GET
        ):
            cleaned["body"] = None  # the form's empty start: these workers send no body template
        name = cleaned.get("use_preset")
        if not name:
            if not cleaned.get("req_url_template"):
                self.add_error("req_url_template", "This field is required (or choose a preset).")
            return cleaned
        given = {"req_url_template": cleaned.get("req_url_template"), "headers": cleaned.get("headers") or {}}
        try:
            filled = preset_fields(name, base_url=cleaned.get("base_url"), api_key=cleaned.get("api_key"), given=given)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, errors)
            return cleaned
        self.instance.preset = filled.pop("preset")
        cleaned.update(filled)
        return cleaned


@admin.register(Worker)
class WorkerAdmin(WorkerConsoleAdmin):  # test prompt, probe now, drain, try before saving
    form = WorkerForm
    list_display = (
        "model_name",
        "url",
        "health_badge",
        "weight",
        "enabled",
        "in_flight",
        "latency",
        "short_last_error",
    )
    list_filter = ("health_state", "enabled", "model_name")
    search_fields = ("model_name", "req_url_template", "owner")
    readonly_fields = (*STATUS_FIELDS, *TRAFFIC_FIELDS, "legacy_options_shown", "owner_key", "preset")
    actions = ("enable_workers", "disable_workers", "drain_workers", "probe_workers_now")
    fieldsets = (
        (
            None,
            {"fields": (*WORKER_REQUEST_FIELDS, "preset")},
        ),
        (
            "Routing",
            {
                "fields": (
                    "owner",
                    "owner_key",
                    "weight",
                    "enabled",
                    "timeout",
                    "max_inflight",
                    "capacity",
                    "ttl",
                    "health_url",
                )
            },
        ),
        ("Health (probes and live traffic of all gateway processes)", {"fields": TRAFFIC_FIELDS}),
        ("Record", {"classes": ("collapse",), "fields": ("created_at", "updated_at")}),
        ("First implementation's fields", {"classes": ("collapse",), "fields": ("legacy_options_shown",)}),
    )

    @admin.display(description="URL template")
    def url(self, worker: Worker) -> str:
        shown = worker.display_url
        return format_html('<span title="{}">{}</span>', shown, shown)

    @admin.display(description="legacy options")
    def legacy_options_shown(self, worker: Worker):
        return redaction.body_for_display(worker.legacy_options)

    @admin.display(description="health", ordering="health_state")
    def health_badge(self, worker: Worker) -> str:
        health = worker_health(worker, *self._traffic(worker)) if worker.pk else worker_health(worker, None, 0.0)
        return format_html(
            '<span title="{}" style="color:#fff;background:{};padding:2px 8px;border-radius:8px">{}</span>',
            health.reason,
            health.color,
            health.state,
        )

    @admin.display(description="health")
    def health(self, worker: Worker) -> str:
        if worker.pk is None:
            return ""
        verdict = worker_health(worker, *self._traffic(worker))
        return format_html("{} {}", self.health_badge(worker), verdict.reason)

    def changelist_view(self, request, extra_context=None):
        token = _page_traffic.set(None)
        try:
            response = super().changelist_view(request, extra_context)
            if hasattr(response, "render"):
                response.render()  # the rows' columns read the page's traffic while rendering
            return response
        finally:
            _page_traffic.reset(token)

    def get_changelist_instance(self, request):
        # One read of the routing state for the whole page, not one per row and column.
        changelist = super().get_changelist_instance(request)
        state = routing_state()
        _page_traffic.set((state.snapshot([worker.pk for worker in changelist.result_list]), state.clock()))
        return changelist

    def _traffic(self, worker: Worker):
        page = _page_traffic.get()
        if page is not None and worker.pk in page[0]:
            return page[0][worker.pk], page[1]
        state = routing_state()
        return state.snapshot([worker.pk])[worker.pk], state.clock()

    @admin.display(description="in flight")
    def in_flight(self, worker: Worker) -> int | str:
        if worker.pk is None:
            return ""
        traffic, _now = self._traffic(worker)
        return traffic.in_flight

    @admin.display(description="heartbeat")
    def heartbeat(self, worker: Worker) -> str:
        if not worker.ttl:
            return "no TTL (never expires)"
        if worker.heartbeat_expires_at is None:
            return ""
        return f"{'expired' if worker.is_expired() else 'expires'} {worker.heartbeat_expires_at:%Y-%m-%d %H:%M:%S} UTC"

    @admin.display(description="live traffic")
    def live_traffic(self, worker: Worker) -> str:
        if worker.pk is None:
            return ""
        traffic, now = self._traffic(worker)
        rate = "n/a" if traffic.success_rate is None else f"{traffic.success_rate:.1%}"
        latency = "n/a" if traffic.latency_ewma_ms is None else f"{traffic.latency_ewma_ms:.0f} ms"
        cooling = (
            f"; told to slow down (429) for {traffic.cooldown_until - now:.0f} s more"
            if traffic.is_cooling(now)
            else ""
        )
        return (
            f"{traffic.in_flight} in flight; latency (peak EWMA) {latency}; success {rate} of "
            f"{traffic.recent_total} recent requests{cooling}"
        )

    @admin.display(description="probes")
    def probes(self, worker: Worker) -> str:
        if worker.last_probe_at is None:
            return "no probe yet"
        latency = f" in {worker.latency_ms:.0f} ms" if worker.latency_ms is not None else ""
        error = (
            f"; last error at {worker.last_error_at:%Y-%m-%d %H:%M:%S} UTC: {worker.last_error}"
            if worker.last_error
            else ""
        )
        return f"last probe {worker.last_probe_at:%Y-%m-%d %H:%M:%S} UTC{latency}{error}"

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, worker: Worker) -> str:
        return "" if worker.latency_ms is None else f"{worker.latency_ms:.0f} ms"

    @admin.display(description="last error")
    def short_last_error(self, worker: Worker) -> str:
        return format_html('<span title="{}">{}</span>', worker.last_error, Truncator(worker.last_error).chars(40))

    @admin.action(description="Enable selected workers", permissions=["change"])
    def enable_workers(self, request, queryset) -> None:
        changed = workers_set_enabled(
            worker_ids=list(queryset.values_list("pk", flat=True)), enabled=True, caller=admin_caller(request)
        )
        self.message_user(request, f"Enabled {changed} worker(s).", messages.SUCCESS)

    @admin.action(description="Disable selected workers", permissions=["change"])
    def disable_workers(self, request, queryset) -> None:
        changed = workers_set_enabled(
            worker_ids=list(queryset.values_list("pk", flat=True)), enabled=False, caller=admin_caller(request)
        )
        self.message_user(request, f"Disabled {changed} worker(s).", messages.SUCCESS)

    add_fieldsets = (
        ("Preset (optional)", {"fields": ("use_preset", "base_url", "api_key")}),
        (
            None,
            {"fields": WORKER_REQUEST_FIELDS},
        ),
        (
            "Routing",
            {"fields": ("owner", "weight", "enabled", "timeout", "max_inflight", "capacity", "ttl", "health_url")},
        ),
    )

    def get_fieldsets(self, request, obj=None):
        return self.add_fieldsets if obj is None else super().get_fieldsets(request, obj)

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = WorkerAddForm
        return super().get_form(request, obj, **kwargs)

    def save_model(self, request, worker: Worker, form, change: bool) -> None:
        changed = list(form.changed_data)
        if not change or "ttl" in changed:
            # Saving a worker with a TTL is a heartbeat, as registering through the API is.
            worker.heartbeat_expires_at = timezone.now() + timedelta(seconds=worker.ttl) if worker.ttl else None
        if change:
            # Only the edited columns, so a probe's health update made meanwhile is not undone.
            if changed:
                extra = ["heartbeat_expires_at"] if "ttl" in changed else []
                worker.save(update_fields=[*changed, *extra, "updated_at"])
                worker_event_record(
                    worker=worker,
                    action=WorkerEvent.Action.CHANGED,
                    caller=admin_caller(request),
                    changed_fields=changed,
                )
        else:
            worker.save()
            worker_event_record(worker=worker, action=WorkerEvent.Action.REGISTERED, caller=admin_caller(request))
        _invalidate_routing_on_commit()

    def delete_model(self, request, worker: Worker) -> None:
        worker_event_record(worker=worker, action=WorkerEvent.Action.OFFLINE, caller=admin_caller(request))
        super().delete_model(request, worker)
        _invalidate_routing_on_commit()

    def delete_queryset(self, request, queryset) -> None:
        for worker in queryset:
            worker_event_record(worker=worker, action=WorkerEvent.Action.OFFLINE, caller=admin_caller(request))
        super().delete_queryset(request, queryset)
        _invalidate_routing_on_commit()


@admin.register(RoutingPolicy)
class RoutingPolicyAdmin(admin.ModelAdmin):
    list_display = ("model_name", "strategy", "fallbacks", "max_attempts", "deadline", "per_try_timeout", "updated_at")
    search_fields = ("model_name",)

    def save_model(self, request, policy: RoutingPolicy, form, change: bool) -> None:
        super().save_model(request, policy, form, change)
        _invalidate_routing_on_commit()

    def delete_model(self, request, policy: RoutingPolicy) -> None:
        super().delete_model(request, policy)
        _invalidate_routing_on_commit()

    def delete_queryset(self, request, queryset) -> None:
        super().delete_queryset(request, queryset)
        _invalidate_routing_on_commit()


@admin.register(ModelOwner)
class ModelOwnerAdmin(admin.ModelAdmin):
    """Which worker key owns each model name and who it is shared with: change the owner to
    transfer a model, add keys to share it (docs/security.md, Tenancy)."""

    list_display = ("model_name", "owner_key", "shared_count", "updated_at")
    search_fields = ("model_name", "owner_key__name", "owner_key__prefix")
    autocomplete_fields = ("owner_key",)
    filter_horizontal = ("shared_with",)

    @admin.display(description="shared with")
    def shared_count(self, record: ModelOwner) -> int:
        return record.shared_with.count()


@admin.register(WorkerEvent)
class WorkerEventAdmin(admin.ModelAdmin):
    """The audit log: read-only, kept when the worker is gone."""

    list_display = ("at", "actor", "action", "model_name", "url", "changed_fields")
    list_filter = ("action", "model_name")
    search_fields = ("actor", "model_name", "url")
    date_hierarchy = "at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def _invalidate_routing_on_commit() -> None:
    # The admin saves inside a transaction; a reload before the commit would read the old rows
    # and count as fresh.
    transaction.on_commit(routing_table.invalidate)
