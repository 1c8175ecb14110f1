"""The operator's view of the registry: workers with their health, filters and actions."""

from datetime import timedelta

from django.contrib import admin, messages
from django.db import transaction
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from inference.routing import routing_table
from inference.routing_state import routing_state
from registry.models import HEALTH_FIELDS, HealthState, RoutingPolicy, Worker
from registry.services import workers_set_enabled

_BADGE_COLORS = {
    HealthState.HEALTHY: "#1e8e3e",
    HealthState.UNHEALTHY: "#d93025",
    HealthState.UNKNOWN: "#80868b",
}

STATUS_FIELDS = (*HEALTH_FIELDS, "created_at", "updated_at")
TRAFFIC_FIELDS = ("heartbeat", "live_traffic")


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = (
        "model_name",
        "req_url_template",
        "health_badge",
        "weight",
        "enabled",
        "in_flight",
        "ejection",
        "heartbeat",
        "last_probe_at",
        "latency",
        "short_last_error",
    )
    list_filter = ("health_state", "enabled", "model_name")
    search_fields = ("model_name", "req_url_template", "owner")
    readonly_fields = (*STATUS_FIELDS, *TRAFFIC_FIELDS, "legacy_options")
    actions = ("enable_workers", "disable_workers")
    fieldsets = (
        (None, {"fields": ("model_name", "req_url_template", "method", "headers", "body", "response_extract")}),
        ("Routing", {"fields": ("owner", "weight", "enabled", "timeout", "max_inflight", "ttl", "health_url")}),
        ("Live traffic (all gateway processes)", {"fields": TRAFFIC_FIELDS}),
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

    def _traffic(self, worker: Worker):
        state = routing_state()
        return state.snapshot([worker.pk])[worker.pk], state.clock()

    @admin.display(description="in flight")
    def in_flight(self, worker: Worker) -> int | str:
        if worker.pk is None:
            return ""
        traffic, _now = self._traffic(worker)
        return traffic.in_flight

    @admin.display(description="ejected")
    def ejection(self, worker: Worker) -> str:
        if worker.pk is None:
            return ""
        traffic, now = self._traffic(worker)
        if traffic.is_ejected(now):
            return f"for {traffic.ejected_until - now:.0f} s"
        if traffic.is_cooling(now):
            return f"cooling {traffic.cooldown_until - now:.0f} s (429)"
        return "half-open" if traffic.is_half_open(now) else ""

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
        ejected = (
            f"ejected for {traffic.ejected_until - now:.0f} s more ({traffic.ejection_reason})"
            if traffic.is_ejected(now) else ("half-open (next request is a trial)" if traffic.is_half_open(now) else "not ejected")
        )
        return (
            f"{traffic.in_flight} in flight; latency (peak EWMA) {latency}; success {rate} of "
            f"{traffic.recent_total} recent requests; {traffic.consecutive_failures} consecutive failures; {ejected}"
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

    def save_model(self, request, worker: Worker, form, change: bool) -> None:
        if not change or "ttl" in form.changed_data:
            # Saving a worker with a TTL is a heartbeat, as registering through the API is.
            worker.heartbeat_expires_at = timezone.now() + timedelta(seconds=worker.ttl) if worker.ttl else None
            if change:
                form.changed_data.append("heartbeat_expires_at")
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


def _invalidate_routing_on_commit() -> None:
    # The admin saves inside a transaction; a reload before the commit would read the old rows
    # and count as fresh.
    transaction.on_commit(routing_table.invalidate)
