"""The request log and probe history as read-only lists in the admin."""

from django.contrib import admin

from console.models import ProbeRecord, RequestLog

# The app list down the left takes a fifth of a 1366 px screen from every page; the home page
# and the breadcrumbs lead to the same places.
admin.site.enable_nav_sidebar = False


class ReadOnlyAdmin(admin.ModelAdmin):
    # Written by the gateway only: an edited log would lie.
    show_full_result_count = False  # one COUNT less per page on a table of millions

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RequestLog)
class RequestLogAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "model_name",
        "worker_id",
        "status",
        "error_code",
        "latency_ms",
        "upstream_ms",
        "attempts",
        "total_tokens",
        "request_id",
    )
    list_filter = ("model_name", "status", "stream")
    search_fields = ("request_id",)
    ordering = ("-created_at",)


@admin.register(ProbeRecord)
class ProbeRecordAdmin(ReadOnlyAdmin):
    list_display = ("checked_at", "worker_id", "ok", "latency_ms", "error")
    list_filter = ("ok",)
    ordering = ("-checked_at",)
