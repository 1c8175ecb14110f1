"""Teams, prices and budgets edited in the admin; the ledger as a read-only list.

A price is never edited in place once requests were charged by it (past cost is not
rewritten): a new price is a new row with its own effective time.
"""

from django.contrib import admin

from console.admin import ReadOnlyAdmin
from usage.catalog import catalog
from usage.models import Budget, Price, Team, TeamMember, UsageRecord


class CatalogAdmin(admin.ModelAdmin):
    """Every change is in force in this process at once, in the others within MMM_USAGE_REFRESH_SECONDS."""

    def save_model(self, request, obj, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        catalog.invalidate()

    def delete_model(self, request, obj) -> None:
        super().delete_model(request, obj)
        catalog.invalidate()

    def delete_queryset(self, request, queryset) -> None:
        super().delete_queryset(request, queryset)
        catalog.invalidate()


class TeamMemberInline(admin.TabularInline):
    model = TeamMember
    extra = 1
    autocomplete_fields = ("api_key",)


class BudgetInline(admin.TabularInline):
    model = Budget
    fk_name = "team"
    extra = 0
    fields = ("model_name", "period", "window_seconds", "limit_tokens", "limit_usd", "thresholds", "enabled")


@admin.register(Team)
class TeamAdmin(CatalogAdmin):
    list_display = ("name", "created_at")
    search_fields = ("name",)
    inlines = (TeamMemberInline, BudgetInline)

    def save_related(self, request, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        catalog.invalidate()


@admin.register(Price)
class PriceAdmin(CatalogAdmin):
    list_display = (
        "model_name",
        "effective_from",
        "input_per_million",
        "output_per_million",
        "cached_per_million",
        "per_image",
        "per_video_second",
    )
    list_filter = ("model_name",)
    search_fields = ("model_name",)

    def get_readonly_fields(self, request, obj=None):
        # A price that requests were charged by stays as it was: add a new one instead.
        if obj is not None and UsageRecord.objects.filter(price_id=obj.pk).exists():
            return [field.name for field in Price._meta.fields]
        return ()


@admin.register(Budget)
class BudgetAdmin(CatalogAdmin):
    list_display = ("__str__", "period", "limit_tokens", "limit_usd", "model_name", "enabled")
    list_filter = ("period", "enabled")
    autocomplete_fields = ("api_key", "team")


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "settled_at",
        "model_name",
        "api_key_prefix",
        "team_id",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "estimated",
        "cost_usd",
        "request_id",
    )
    list_filter = ("model_name", "estimated", "kind")
    search_fields = ("request_id", "usage_id", "api_key_prefix")
    ordering = ("-settled_at",)
