"""Keeping, finding and pruning stored responses; each is visible to its owner only."""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone
from rest_framework import status

from mmm.api_errors import ApiError
from response_store.models import StoredResponse

logger = logging.getLogger("mmm.responses")


class ResponseNotFound(ApiError):
    status_code = status.HTTP_404_NOT_FOUND
    default_code = "response_not_found"

    def __init__(self, response_id: str):
        # The same answer whether the id does not exist, expired, or belongs to another key.
        super().__init__(f"no stored response with id {response_id!r}")


def owner_of(caller) -> str:
    """The owner string of a request's caller (accounts.caller.Caller or None)."""
    if caller is None:
        return ""
    if caller.api_key_prefix:
        return f"key:{caller.api_key_prefix}"
    return f"user:{caller.user_id}"


def stored_response(*, response_id: str, owner: str) -> StoredResponse:
    """The caller's own stored response, within the retention period; else ResponseNotFound."""
    cutoff = timezone.now() - timedelta(days=settings.MMM_RESPONSES_RETENTION_DAYS)
    found = StoredResponse.objects.filter(response_id=response_id, owner=owner, created_at__gte=cutoff).first()
    if found is None:
        raise ResponseNotFound(response_id)
    return found


def conversation_before(*, previous_response_id: str | None, owner: str) -> list[dict]:
    """The conversation a request continues: that of ``previous_response_id`` (the caller's own)."""
    if previous_response_id is None:
        return []
    return stored_response(response_id=previous_response_id, owner=owner).conversation


def response_store(*, response: dict, conversation: list[dict], owner: str) -> bool:
    """Keep ``response``; False if the database refused. The answer has been made by then (and
    a stream is half sent), so it still goes to the client: only a later lookup will miss it."""
    try:
        with transaction.atomic():  # inside a caller's transaction, a failure rolls back only this
            StoredResponse.objects.create(
                response_id=response["id"],
                owner=owner,
                model_name=response["model"][:200],
                response=response,
                conversation=conversation,
            )
    except DatabaseError as exc:
        logger.error("response %s not stored: %s", response["id"], exc)
        return False
    return True


def response_delete(*, response_id: str, owner: str) -> None:
    deleted, _ = StoredResponse.objects.filter(response_id=response_id, owner=owner).delete()
    if not deleted:
        raise ResponseNotFound(response_id)


def responses_older_than(age: timedelta):
    """The stored responses prune_responses deletes."""
    return StoredResponse.objects.filter(created_at__lt=timezone.now() - age)
