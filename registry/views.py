"""The seed's registry endpoints: register, list and take offline workers."""

from rest_framework.response import Response
from rest_framework.views import APIView

from registry.selectors import worker_list
from registry.serializers import WorkerKeyInput, WorkerListQuery, WorkerOutput, WorkerRegisterInput
from registry.services import worker_offline, worker_register


class WorkerRegisterView(APIView):
    def post(self, request):
        serializer = WorkerRegisterInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        worker, _created = worker_register(**serializer.validated_data)
        answer = {"success": True, "msg": f"register LLM {worker.model_name} succeed!"}
        if "preset" in serializer.validated_data:
            answer["worker"] = WorkerOutput(worker).data  # what the preset filled in
        return Response(answer)


class WorkerListView(APIView):
    def get(self, request):
        query = WorkerListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        workers = worker_list(**query.validated_data)
        return Response({"success": True, "data": WorkerOutput(workers, many=True).data})


class WorkerOfflineView(APIView):
    def post(self, request):
        serializer = WorkerKeyInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        worker_offline(**serializer.validated_data)
        key = serializer.validated_data
        return Response(
            {
                "success": True,
                "msg": f"remove llm worker(model_name={key['model_name']}, url={key['req_url_template']}) succeed!",
            }
        )
