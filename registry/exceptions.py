from rest_framework import status

from inference.redaction import url_for_display
from mmm.api_errors import ApiError


class WorkerNotFound(ApiError):
    status_code = status.HTTP_404_NOT_FOUND
    default_code = "worker_not_found"

    def __init__(self, *, model_name: str, req_url_template: str):
        super().__init__(
            f"no worker is registered with model_name={model_name!r} and req_url_template={url_for_display(req_url_template)!r}",
            model_name=model_name,
        )


class NotWorkerOwner(ApiError):
    status_code = status.HTTP_403_FORBIDDEN
    default_code = "not_worker_owner"

    def __init__(self, *, model_name: str):
        super().__init__(
            f"this worker of model {model_name!r} was registered by another key; "
            "only that key or an admin key may change it or take it offline",
            model_name=model_name,
        )


class PolicyNotFound(ApiError):
    status_code = status.HTTP_404_NOT_FOUND
    default_code = "policy_not_found"

    def __init__(self, *, model_name: str):
        super().__init__(f"model {model_name!r} has no routing policy (it uses the defaults)", model_name=model_name)


class ModelNotOwned(ApiError):
    status_code = status.HTTP_403_FORBIDDEN
    default_code = "model_not_owned"

    def __init__(self, *, model_name: str):
        super().__init__(
            f"model {model_name!r} belongs to another key: only its owner, the keys it is shared with and admin "
            "keys may add workers to it (an admin shares it with POST /api/server/model/owner)",
            model_name=model_name,
        )
