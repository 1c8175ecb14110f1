"""The operator's view of the registry: workers with their health, filters and actions."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.html import format_html
from django.utils.text import Truncator

from inference.routing import routing_table
from registry.models import HEALTH_FIELDS, HealthState, Worker
from registry.presets import preset_choices, preset_fields
from registry.services import workers_set_enabled

_BADGE_COLORS = {
    HealthState.HEALTHY: "#1e8e3e",
    HealthState.UNHEALTHY: "#d93025",
    HealthState.UNKNOWN: "#80868b",
}

STATUS_FIELDS = (*HEALTH_FIELDS, "created_at", "updated_at")


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

    def clean(self) -> dict:
        cleaned = super().clean()
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
class WorkerAdmin(admin.ModelAdmin):
    list_display = (
        "model_name",
        "req_url_template",
        "health_badge",
        "weight",
        "enabled",
        "last_probe_at",
        "latency",
        "short_last_error",
    )
    list_filter = ("health_state", "enabled", "model_name")
    search_fields = ("model_name", "req_url_template", "owner")
    readonly_fields = (*STATUS_FIELDS, "legacy_options", "preset")
    actions = ("enable_workers", "disable_workers")
    fieldsets = (
        (None, {"fields": (
            "model_name", "kind", "req_url_template", "upstream_model", "method", "headers", "body", "response_extract",
            "preset",
        )}),
        ("Routing", {"fields": ("owner", "weight", "enabled", "timeout", "health_url")}),
        ("Health (written by probes)", {"fields": STATUS_FIELDS}),
        ("First implementation's fields", {"classes": ("collapse",), "fields": ("legacy_options",)}),
    )

    @admin.display(description="health", ordering="health_state")
    def health_badge(self, worker: Worker) -> str:
        return format_html(
            '<span style="color:#fff;background:{};padding:2px 8px;border-radius:8px">{}</span>',
            _BADGE_COLORS[worker.health_state],
            worker.get_health_state_display(),
        )

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, worker: Worker) -> str:
        return "" if worker.latency_ms is None else f"{worker.latency_ms:.0f} ms"

    @admin.display(description="last error")
    def short_last_error(self, worker: Worker) -> str:
        return Truncator(worker.last_error).chars(80)

    @admin.action(description="Enable selected workers")
    def enable_workers(self, request, queryset) -> None:
        changed = workers_set_enabled(worker_ids=list(queryset.values_list("pk", flat=True)), enabled=True)
        self.message_user(request, f"Enabled {changed} worker(s).", messages.SUCCESS)

    @admin.action(description="Disable selected workers")
    def disable_workers(self, request, queryset) -> None:
        changed = workers_set_enabled(worker_ids=list(queryset.values_list("pk", flat=True)), enabled=False)
        self.message_user(request, f"Disabled {changed} worker(s).", messages.SUCCESS)

    add_fieldsets = (
        ("Preset (optional)", {"fields": ("use_preset", "base_url", "api_key")}),
        (None, {"fields": (
            "model_name", "kind", "req_url_template", "upstream_model", "method", "headers", "body", "response_extract",
        )}),
        ("Routing", {"fields": ("owner", "weight", "enabled", "timeout", "health_url")}),
    )

    def get_fieldsets(self, request, obj=None):
        return self.add_fieldsets if obj is None else super().get_fieldsets(request, obj)

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = WorkerAddForm
        return super().get_form(request, obj, **kwargs)

    def save_model(self, request, worker: Worker, form, change: bool) -> None:
        if change:
            # Only the edited columns, so a probe's health update made meanwhile is not undone.
            if form.changed_data:
                worker.save(update_fields=[*form.changed_data, "updated_at"])
        else:
            worker.save()
        _invalidate_routing_on_commit()

    def delete_model(self, request, worker: Worker) -> None:
        super().delete_model(request, worker)
        _invalidate_routing_on_commit()

    def delete_queryset(self, request, queryset) -> None:
        super().delete_queryset(request, queryset)
        _invalidate_routing_on_commit()


def _invalidate_routing_on_commit() -> None:
    # The admin saves inside a transaction; a reload before the commit would read the old rows
    # and count as fresh.
    transaction.on_commit(routing_table.invalidate)
