"""Jobs for operators: where each is, on which worker, how long it waited and ran, why it failed."""

from django.contrib import admin

from jobs.models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = (
        "public_id",
        "model_name",
        "status",
        "progress",
        "worker_shown",
        "queue_wait",
        "run_time",
        "owner",
        "short_error",
        "created_at",
    )
    list_filter = ("status", "kind", "model_name")
    search_fields = ("public_id", "model_name", "upstream_id", "owner")
    list_select_related = ("worker",)
    # The runners write jobs; an operator looks, or deletes.
    readonly_fields = [field.name for field in Job._meta.fields] + ["queue_wait", "run_time"]
    fieldsets = (
        (None, {"fields": ("public_id", "kind", "model_name", "owner", "api_key", "prompt", "params")}),
        (
            "Where it is",
            {
                "fields": (
                    "status",
                    "upstream_status",
                    "upstream_phase",
                    "progress",
                    "error_code",
                    "error",
                    "last_error",
                )
            },
        ),
        ("Worker", {"fields": ("worker", "worker_label", "upstream_id", "submit_attempts", "tried_worker_ids")}),
        (
            "Times",
            {
                "fields": (
                    "created_at",
                    "submitted_at",
                    "completed_at",
                    "expires_at",
                    "queue_wait",
                    "run_time",
                    "next_poll_at",
                    "last_polled_at",
                    "last_contact_at",
                    "not_before",
                )
            },
        ),
        ("Result", {"fields": ("result_name", "result_url", "result_content_type", "result_bytes")}),
        ("Lease", {"classes": ("collapse",), "fields": ("lease_owner", "lease_expires_at")}),
    )

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="worker")
    def worker_shown(self, job: Job) -> str:
        return str(job.worker) if job.worker else job.worker_label or "—"

    @admin.display(description="error")
    def short_error(self, job: Job) -> str:
        return (job.error[:120] + "…") if len(job.error) > 120 else job.error
