"""What /api/webhooks takes and answers."""

from rest_framework import serializers

from inference.redaction import url_for_display
from mmm.api_fields import RefuseUnknownFieldsMixin, StrictCharField
from webhooks.models import WebhookEndpoint


class WebhookEndpointInput(RefuseUnknownFieldsMixin, serializers.Serializer):
    api_key = StrictCharField(max_length=16, help_text="The prefix of the key whose events go here (as lists show it).")
    url = StrictCharField(max_length=2000, help_text="http:// or https://; checked against the egress policy.")
    event_types = serializers.ListField(
        child=StrictCharField(max_length=100),
        required=False,
        default=list,
        help_text='Event types sent here ("video.completed", "video.*"); empty sends every event.',
    )
    description = StrictCharField(max_length=200, required=False, allow_blank=True, default="")


class WebhookEndpointOutput(serializers.ModelSerializer):
    api_key = serializers.CharField(source="api_key.prefix", help_text="The key's prefix.")
    api_key_name = serializers.CharField(source="api_key.name")
    url = serializers.SerializerMethodField(help_text="Its query values and password masked (***).")

    class Meta:
        model = WebhookEndpoint
        fields = ("id", "api_key", "api_key_name", "url", "event_types", "description", "enabled", "created_at")

    def get_url(self, endpoint: WebhookEndpoint) -> str:
        return url_for_display(endpoint.url)
