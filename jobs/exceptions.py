from rest_framework import status

from mmm.api_errors import ApiError


class JobNotFound(ApiError):
    """Unknown, deleted, expired, or another key's: the same answer, so ids cannot be probed."""

    status_code = status.HTTP_404_NOT_FOUND
    default_code = "job_not_found"

    def __init__(self, public_id: str):
        super().__init__(f"no job {public_id!r} (it may have expired, been deleted, or belong to another key)")


class JobNotReady(ApiError):
    status_code = status.HTTP_409_CONFLICT
    default_code = "job_not_completed"


class InvalidJobRequest(ApiError):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_request"

    def __init__(self, msg: str, *, param: str | None = None):
        super().__init__(msg)
        self.param = param
