"""The seed's registry endpoints: register, list and take offline workers."""

from rest_framework.response import Response

from accounts.permissions import AdminAccess, WorkerAccess
from inference.redaction import url_for_display
from inference.routing_state import routing_state
from mmm.api_view import GatewayAPIView
from registry.models import RoutingPolicy
from registry.ownership import model_owner_describe, model_owner_set
from registry.selectors import worker_list
from registry.serializers import (
    ModelOwnerInput,
    PolicyInput,
    PolicyKeyInput,
    PolicyOutput,
    WorkerKeyInput,
    WorkerListQuery,
    WorkerOutput,
    WorkerRegisterInput,
)
from registry.services import policy_delete, policy_set, worker_heartbeat, worker_offline, worker_register


class WorkerRegisterView(GatewayAPIView):
    permission_classes = [WorkerAccess]

    def post(self, request):
        serializer = WorkerRegisterInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        worker, _created = worker_register(**serializer.validated_data, caller=request.auth)
        answer = {"success": True, "msg": f"register LLM {worker.model_name} succeed!"}
        if "preset" in serializer.validated_data:
            answer["worker"] = WorkerOutput(worker).data  # what the preset filled in
        return Response(answer)


class WorkerListView(GatewayAPIView):
    permission_classes = [WorkerAccess]

    def get(self, request):
        query = WorkerListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        workers = list(worker_list(**query.validated_data))
        state = routing_state()
        ids = [worker.pk for worker in workers]
        engines = state.engine_read([worker.pk for worker in workers if worker.engine])
        context = {"traffic": state.snapshot(ids), "engines": engines, "now": state.clock()}
        return Response({"success": True, "data": WorkerOutput(workers, many=True, context=context).data})


class WorkerOfflineView(GatewayAPIView):
    permission_classes = [WorkerAccess]

    def post(self, request):
        serializer = WorkerKeyInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        worker_offline(**serializer.validated_data, caller=request.auth)
        key = serializer.validated_data
        url = url_for_display(key["req_url_template"])
        return Response(
            {
                "success": True,
                "msg": f"remove llm worker(model_name={key['model_name']}, url={url}) succeed!",
            }
        )


class WorkerHeartbeatView(GatewayAPIView):
    permission_classes = [WorkerAccess]

    def post(self, request):
        serializer = WorkerKeyInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        worker = worker_heartbeat(**serializer.validated_data, caller=request.auth)
        expires = worker.heartbeat_expires_at
        return Response(
            {
                "success": True,
                "msg": "heartbeat received"
                if expires
                else "heartbeat received; this worker has no ttl and never expires",
                "expires_at": expires.isoformat().replace("+00:00", "Z") if expires else None,
            }
        )


class PolicyListView(GatewayAPIView):
    permission_classes = [WorkerAccess]

    def get(self, request):
        return Response({"success": True, "data": PolicyOutput(RoutingPolicy.objects.all(), many=True).data})


class PolicySetView(GatewayAPIView):
    # A policy changes routing for every client of the model: operators only.
    permission_classes = [AdminAccess]

    def post(self, request):
        serializer = PolicyInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        policy, created = policy_set(**serializer.validated_data)
        return Response(
            {
                "success": True,
                "msg": f"routing policy of {policy.model_name} {'created' if created else 'updated'}",
                "data": PolicyOutput(policy).data,
            }
        )


class PolicyDeleteView(GatewayAPIView):
    permission_classes = [AdminAccess]

    def post(self, request):
        serializer = PolicyKeyInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        policy_delete(**serializer.validated_data)
        model_name = serializer.validated_data["model_name"]
        return Response({"success": True, "msg": f"routing policy of {model_name} deleted; it uses the defaults"})


class ModelOwnerView(GatewayAPIView):
    # Who may add workers to a model decides who sees its prompts: operators only.
    permission_classes = [AdminAccess]

    def post(self, request):
        serializer = ModelOwnerInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        record = model_owner_set(**serializer.validated_data)
        return Response(
            {"success": True, "msg": f"ownership of {record.model_name} updated", "data": model_owner_describe(record)}
        )
