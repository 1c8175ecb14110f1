"""The seed's completion endpoint."""

from django.http import HttpResponse
from rest_framework.renderers import JSONRenderer

from accounts.permissions import InferenceAccess
from console.completion_log import completion_logged
from inference.services import completion_create
from mmm.api_fields import StrictCharField, StrictNumberField
from mmm.api_view import GatewayAPIView
from mmm.input_serializers import BoundOnceSerializer, validated

# Rendered here, not through a DRF Response: the same bytes, without the negotiation and the
# template-response steps a Response takes on the way out (about 2% of a completion's CPU).
_RENDERER = JSONRenderer()


class CompletionView(GatewayAPIView):
    permission_classes = [InferenceAccess]

    class InputSerializer(BoundOnceSerializer):
        # Unknown fields are ignored here: completion clients of the seed send extras.
        input = StrictCharField(allow_blank=True, trim_whitespace=False)
        model_name = StrictCharField(max_length=200)
        temperature = StrictNumberField(required=False, allow_null=True, min_value=0)

    def post(self, request):
        data = validated(self.InputSerializer, request.data)
        # The request log, metrics and the request's log line (console.middleware finishes them).
        with completion_logged(request, model_name=data["model_name"], prompt=data["input"]) as entry:
            completion = entry.answered(
                completion_create(
                    model_name=data["model_name"], prompt=data["input"], temperature=data.get("temperature")
                )
            )
        body = {"success": True, "msg": "execute succeed", "result": completion.result}
        if completion.model_name != data["model_name"]:
            body["model"] = completion.model_name  # not in the seed's body: a fallback model answered
        return HttpResponse(_RENDERER.render(body), content_type=_RENDERER.media_type)
