"""Webhooks in the admin: endpoints (the signing secret shown once, on the page after adding;
the URL's secrets masked, as worker URLs are) and the outbox, read-only, with a "send again"."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.template.response import TemplateResponse
from django.utils import timezone

from inference.redaction import url_for_display, url_unmasked
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from webhooks.services import new_secret, webhook_url_check


class WebhookEndpointForm(forms.ModelForm):
    url = forms.CharField(max_length=2000, help_text=WebhookEndpoint._meta.get_field("url").help_text)
    event_types = forms.CharField(
        required=False,
        help_text='Comma-separated event types ("video.completed, image.*"); empty sends every event.',
    )

    class Meta:
        model = WebhookEndpoint
        fields = ("api_key", "url", "event_types", "description", "enabled")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["url"] = url_for_display(self.instance.url)
            self.initial["event_types"] = ", ".join(self.instance.event_types or [])

    def clean_url(self) -> str:
        # A masked value sent back keeps the stored secret, as a password field does.
        url = url_unmasked(self.cleaned_data["url"].strip(), self.instance.url if self.instance.pk else "")
        try:
            webhook_url_check(url)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["url"]) from None
        return url

    def clean_event_types(self) -> list[str]:
        return [name.strip() for name in self.cleaned_data["event_types"].split(",") if name.strip()]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ("shown_url", "api_key", "event_list", "enabled", "created_at")
    list_filter = ("enabled",)
    search_fields = ("api_key__name", "api_key__prefix", "description")
    readonly_fields = ("created_at",)

    @admin.display(description="URL")
    def shown_url(self, endpoint: WebhookEndpoint) -> str:
        return url_for_display(endpoint.url)

    @admin.display(description="events")
    def event_list(self, endpoint: WebhookEndpoint) -> str:
        return ", ".join(endpoint.event_types) or "all"

    def save_model(self, request, endpoint: WebhookEndpoint, form, change: bool) -> None:
        if not change:
            endpoint.secret = new_secret()
            request.mmm_new_webhook_secret = endpoint.secret  # shown by response_add, then only stored encrypted
        super().save_model(request, endpoint, form, change)

    def response_add(self, request, endpoint: WebhookEndpoint, post_url_continue=None):
        secret = getattr(request, "mmm_new_webhook_secret", None)
        if secret is None:
            return super().response_add(request, endpoint, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "endpoint": endpoint,
            "shown_url": url_for_display(endpoint.url),
            "secret": secret,
            "opts": self.opts,
            "title": "Webhook endpoint created",
        }
        response = TemplateResponse(request, "admin/webhooks/webhookendpoint/created.html", context)
        response["Cache-Control"] = "no-store"
        return response


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("event_type", "event_id", "endpoint", "status", "attempts", "next_attempt_at", "last_status_code")
    list_filter = ("status", "event_type")
    search_fields = ("event_id", "idempotency_key")
    readonly_fields = (
        "endpoint",
        "event_id",
        "event_type",
        "idempotency_key",
        "payload",
        "status",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "delivered_at",
        "created_at",
    )
    actions = ("send_again",)

    def has_add_permission(self, request) -> bool:
        return False  # events come from the gateway, not from a form

    @admin.action(description="Send selected deliveries again now", permissions=["change"])
    def send_again(self, request, queryset) -> None:
        changed = queryset.exclude(status=DeliveryStatus.PENDING, lease_expires_at__gt=timezone.now()).update(
            status=DeliveryStatus.PENDING, next_attempt_at=timezone.now(), attempts=0
        )
        self.message_user(
            request,
            f"{changed} deliver{'y' if changed == 1 else 'ies'} will be sent on the next pass.",
            messages.SUCCESS,
        )
