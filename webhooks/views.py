"""/api/webhooks: an admin registers, lists and removes the webhook endpoints of client keys."""

from django.core.exceptions import ValidationError
from rest_framework import status
from rest_framework.response import Response

from accounts.models import ApiKey
from accounts.permissions import AdminAccess
from mmm.api_errors import ApiError
from mmm.api_view import GatewayAPIView
from webhooks.models import WebhookEndpoint
from webhooks.serializers import WebhookEndpointInput, WebhookEndpointOutput
from webhooks.services import webhook_endpoint_create


class WebhookEndpointNotFound(ApiError):
    status_code = status.HTTP_404_NOT_FOUND
    default_code = "webhook_not_found"

    def __init__(self, *, endpoint_id: int):
        super().__init__(f"no webhook endpoint has the id {endpoint_id}")


class WebhookEndpointListView(GatewayAPIView):
    # Where a key's events go decides who learns about its jobs: operators only.
    permission_classes = [AdminAccess]

    def get(self, request):
        endpoints = WebhookEndpoint.objects.select_related("api_key")
        if request.query_params.get("api_key"):
            endpoints = endpoints.filter(api_key__prefix=request.query_params["api_key"])
        return Response({"success": True, "data": WebhookEndpointOutput(endpoints, many=True).data})

    def post(self, request):
        serializer = WebhookEndpointInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        key = ApiKey.objects.filter(prefix=fields.pop("api_key")).first()
        if key is None:
            raise ValidationError({"api_key": ["no API key has this prefix"]})
        endpoint, secret = webhook_endpoint_create(api_key=key, **fields)
        answer = {**WebhookEndpointOutput(endpoint).data, "secret": secret}
        return Response(
            {"success": True, "msg": "webhook endpoint created; its secret is shown only now", "data": answer},
            status=status.HTTP_201_CREATED,
            headers={"Cache-Control": "no-store"},
        )


class WebhookEndpointView(GatewayAPIView):
    permission_classes = [AdminAccess]

    def get(self, request, endpoint_id: int):
        return Response({"success": True, "data": WebhookEndpointOutput(_endpoint(endpoint_id)).data})

    def delete(self, request, endpoint_id: int):
        _endpoint(endpoint_id).delete()  # its pending deliveries go with it
        return Response({"success": True, "msg": f"webhook endpoint {endpoint_id} deleted"})


# The largest id a bigint column holds: a longer number in the URL names no endpoint (and
# PostgreSQL would refuse the query).
_MAX_ID = 2**63 - 1


def _endpoint(endpoint_id: int) -> WebhookEndpoint:
    endpoint = None
    if endpoint_id <= _MAX_ID:
        endpoint = WebhookEndpoint.objects.select_related("api_key").filter(pk=endpoint_id).first()
    if endpoint is None:
        raise WebhookEndpointNotFound(endpoint_id=endpoint_id)
    return endpoint
