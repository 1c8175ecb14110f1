"""The seed's registry endpoints: register, list and take offline workers."""

from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import WorkerAccess
from registry.redaction import url_for_display
from registry.selectors import worker_list
from registry.serializers import WorkerKeyInput, WorkerListQuery, WorkerOutput, WorkerRegisterInput
from registry.services import worker_offline, worker_register


class WorkerRegisterView(APIView):
    permission_classes = [WorkerAccess]

    def post(self, request):
        serializer = WorkerRegisterInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        worker, _created = worker_register(**serializer.validated_data, caller=request.auth)
        return Response({"success": True, "msg": f"register LLM {worker.model_name} succeed!"})


class WorkerListView(APIView):
    permission_classes = [WorkerAccess]

    def get(self, request):
        query = WorkerListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        workers = worker_list(**query.validated_data)
        return Response({"success": True, "data": WorkerOutput(workers, many=True).data})


class WorkerOfflineView(APIView):
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
