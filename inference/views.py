"""The seed's completion endpoint."""

import logging
import time

from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import InferenceAccess
from inference.services import completion_create
from mmm.api_fields import StrictCharField, StrictNumberField

logger = logging.getLogger("mmm.completion")


class CompletionView(APIView):
    permission_classes = [InferenceAccess]

    class InputSerializer(serializers.Serializer):
        # Unknown fields are ignored here: completion clients of the seed send extras.
        input = StrictCharField(allow_blank=True, trim_whitespace=False)
        model_name = StrictCharField(max_length=200)
        temperature = StrictNumberField(required=False, allow_null=True, min_value=0)

    def post(self, request):
        started = time.monotonic()
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        completion = completion_create(
            model_name=data["model_name"], prompt=data["input"], temperature=data.get("temperature")
        )
        logger.info(
            "model=%s answered_by_model=%s worker=%s attempts=%d upstream_ms=%.1f total_ms=%.1f",
            data["model_name"],
            completion.model_name,
            completion.worker.pk,
            completion.attempts,
            completion.upstream_seconds * 1000,
            (time.monotonic() - started) * 1000,
        )
        body = {"success": True, "msg": "execute succeed", "result": completion.result}
        if completion.model_name != data["model_name"]:
            body["model"] = completion.model_name  # not in the seed's body: a fallback model answered
        return Response(body)
