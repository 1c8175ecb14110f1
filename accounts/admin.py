"""Keys in the admin: created here (the key shown once, on the page after saving) and revoked."""

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse

from accounts.keys import key_cache, new_key
from accounts.models import ApiKey, Scope, secret_digest


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=Scope.choices, widget=forms.CheckboxSelectMultiple)
    allowed_models = forms.CharField(required=False, help_text="Comma-separated model names; empty allows every model.")

    class Meta:
        model = ApiKey
        fields = ("name", "scopes", "allowed_models", "rate_limit_per_minute", "expires_at", "revoked")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["allowed_models"] = ", ".join(self.instance.allowed_models or [])

    def clean_allowed_models(self) -> list[str]:
        return [name.strip() for name in self.cleaned_data["allowed_models"].split(",") if name.strip()]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ("name", "prefix", "scope_list", "rate_limit_per_minute", "expires_at", "revoked", "last_used_at")
    list_filter = ("revoked",)
    search_fields = ("name", "prefix")
    readonly_fields = ("prefix", "last_used_at", "created_at")
    actions = ("revoke_keys",)

    @admin.display(description="scopes")
    def scope_list(self, key: ApiKey) -> str:
        return ", ".join(key.scopes)

    def save_model(self, request, key: ApiKey, form, change: bool) -> None:
        if not change:
            key.prefix, secret = new_key()
            key.secret_hash = secret_digest(secret)
            request.mmm_new_api_key = secret  # shown by response_add, stored nowhere
        super().save_model(request, key, form, change)
        key_cache.clear()

    def response_add(self, request, key: ApiKey, post_url_continue=None):
        secret = getattr(request, "mmm_new_api_key", None)
        if secret is None:
            return super().response_add(request, key, post_url_continue)
        # A page of its own rather than a message: messages travel in a cookie or the session.
        context = {
            **self.admin_site.each_context(request),
            "key": key,
            "secret": secret,
            "opts": self.opts,
            "title": f"API key {key.name} created",
        }
        response = TemplateResponse(request, "admin/accounts/apikey/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def delete_model(self, request, key: ApiKey) -> None:
        super().delete_model(request, key)
        key_cache.clear()

    def delete_queryset(self, request, queryset) -> None:
        super().delete_queryset(request, queryset)
        key_cache.clear()

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_keys(self, request, queryset) -> None:
        changed = queryset.filter(revoked=False).update(revoked=True)
        key_cache.clear()
        self.message_user(request, f"Revoked {changed} key(s).", messages.SUCCESS)
